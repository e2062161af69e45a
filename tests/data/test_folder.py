"""LaPa's layout (and a user's own labelled folder): detection, reading, checks, flips."""

import numpy as np
import pytest
from PIL import Image

from faceparsing.classes import LAPA
from faceparsing.data import layout, synthetic
from faceparsing.data.augment import augment_sample, horizontal_flip
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.errors import DatasetError


def write_folder_sample(root, split, stem, label, image_size=None, image=True):
    height, width = label.shape
    if image:
        path = root / split / "images" / f"{stem}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", image_size or (width, height), (90, 60, 30)).save(path)
    path = root / split / "labels" / f"{stem}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label.astype(np.uint8)).save(path)


def lapa_label(height=24, width=32):
    label = np.zeros((height, width), np.uint8)
    label[4:20, 4:28] = 1  # skin
    label[6:8, 6:12], label[6:8, 20:26] = 2, 3  # left and right eyebrow
    label[9:11, 6:12], label[9:11, 20:26] = 4, 5  # left and right eye
    label[0:4] = 10  # hair
    return label


@pytest.fixture
def lapa_root(tmp_path):
    for split, count in (("train", 4), ("val", 1), ("test", 1)):
        for index in range(count):
            write_folder_sample(tmp_path, split, f"{split}_{index}", lapa_label())
    (tmp_path / "train" / "landmarks").mkdir()  # released beside images/labels; ignored
    return tmp_path


def test_layout_is_detected(lapa_root, tmp_path_factory):
    assert layout.detect_dataset(lapa_root) == "lapa"
    opened = layout.open_layout(lapa_root)
    assert opened.class_set == LAPA
    assert [opened.sample_name(i) for i in opened.split_ids("train")] == [
        f"train_{index}" for index in range(4)
    ]
    assert len(opened.split_ids("all")) == 6
    (lapa_root / "classes.yaml").write_text(
        "names: [background, skin, a, b, c, d, e, f, g, h, i]\n"
    )
    assert layout.detect_dataset(lapa_root) == "folder"
    assert layout.open_layout(lapa_root).class_set.names[2] == "a"
    assert layout.open_layout(lapa_root, "lapa").class_set == LAPA  # the key forces it


def test_dataset_reads_labels_at_the_model_size(lapa_root):
    data = CelebAMaskHQ(lapa_root, "train", batch_size=2, image_size=16, shuffle=False)
    images, labels = data[0]
    assert images.shape == (2, 16, 16, 3) and labels.shape == (2, 16, 16)
    assert set(np.unique(labels)) <= set(range(11)) and data.num_classes == 11


def test_class_map_merges_dataset_labels(lapa_root):
    class_map = {"hair": "hair", "face": ["skin", "left_eye", "right_eye"]}
    data = CelebAMaskHQ(lapa_root, "train", batch_size=1, image_size=32, class_map=class_map)
    _, labels = data[0]
    assert data.class_set.names == ("background", "hair", "face")
    assert set(np.unique(labels)) == {0, 1, 2}  # brows dropped to background


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("missing_label", "label"),  # "missing label ..." / "cannot read label ...: file not found"
        ("size", "is 32x24, its image"),
        ("id", "holds id 11, beyond the 11 classes of lapa"),
        ("rgb", "is a RGB image; expected one class id per pixel"),
    ],
)
def test_bad_samples_are_one_line_naming_the_file(lapa_root, defect, message):
    label_path = lapa_root / "val" / "labels" / "val_0.png"
    if defect == "missing_label":
        label_path.unlink()
    elif defect == "size":
        write_folder_sample(lapa_root, "val", "val_0", lapa_label(), image_size=(40, 30))
    elif defect == "id":
        write_folder_sample(lapa_root, "val", "val_0", np.full((24, 32), 11))
    else:
        Image.new("RGB", (32, 24)).save(label_path)
    opened = layout.open_layout(lapa_root)
    (val_id,) = opened.split_ids("val")
    problems = layout.check_dataset(lapa_root, "val", progress=False)
    assert len(problems) == 1 and message in problems[0] and "val_0" in problems[0]
    with pytest.raises(DatasetError) as error:
        if defect in ("missing_label", "size"):
            layout.validate_split(opened, [val_id])  # before training: headers only
        else:
            opened.load_label(val_id)
    assert "val_0" in str(error.value) and "\n" not in str(error.value)


def test_flips_swap_lapa_pairs():
    label = lapa_label()
    _, flipped = horizontal_flip(np.zeros(label.shape + (3,), np.uint8), label, LAPA)
    # The left eyebrow (2) at columns 6..11 is now the right eyebrow (3) at 20..25.
    assert (flipped[6:8, 20:26] == 3).all() and (flipped[6:8, 6:12] == 2).all()
    assert (flipped[9:11, 20:26] == 5).all() and (flipped[0:4] == 10).all()
    for seed in range(20):  # the augmentation path: a flip there swaps the same ids
        rng = np.random.default_rng(seed)
        flip = np.random.default_rng(seed).random() < 0.5
        image = np.zeros(label.shape + (3,), np.uint8)
        _, augmented = augment_sample(image, label, rng, LAPA)
        if flip:
            left = np.argwhere(augmented == 4)[:, 1].mean()
            right = np.argwhere(augmented == 5)[:, 1].mean()
            assert left < right  # "left eye" stays on the image's left after the swap
            break
    else:
        pytest.fail("no seed flipped")


def test_synthetic_lapa_layout(tmp_path):
    synthetic.make_demo_dataset(tmp_path, 3, seed=0, layout="lapa")
    opened = layout.open_layout(tmp_path)
    assert opened.kind == "lapa" and len(opened.split_ids("all")) == 3
    label = opened.load_label(0)
    assert label.shape == (512, 512) and label.max() <= 10 and 10 in label and 4 in label
    assert not layout.check_dataset(tmp_path, progress=False)


def test_demo_set_refuses_a_folder_holding_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="refusing to write a synthetic set into") as error:
        synthetic.make_demo_dataset(tmp_path, 2)
    assert "\n" not in str(error.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]
    again = tmp_path / "demo"
    synthetic.make_demo_dataset(again, 1)
    synthetic.make_demo_dataset(again, 1, start_id=1)  # its own earlier set: extended
    assert layout.split_ids(again, "all") == [0, 1]


def test_class_weights_follow_the_class_set(lapa_root):
    data = CelebAMaskHQ(lapa_root, "train", batch_size=2, image_size=16,
                        class_weights="median_frequency")  # fmt: skip
    assert data.class_weight_vector.shape == (11,)
    _, labels, weights = data[0]
    assert weights.shape == labels.shape and np.isfinite(weights).all()
    merged = CelebAMaskHQ(lapa_root, "train", batch_size=2, image_size=16,
                          class_weights="per_image", class_map="hair,skin")  # fmt: skip
    _, labels, weights = merged[0]
    assert set(np.unique(labels)) <= {0, 1, 2} and weights.shape == labels.shape
