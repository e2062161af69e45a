import numpy as np
import pytest
from PIL import Image

import data_generator as dg
from faceparsing import errors
from faceparsing.classes import CLASS_IDS, NUM_CLASSES, PART_NAMES
from faceparsing.data import augment, checks, class_weights, layout, samples
from faceparsing.data.dataset import CelebAMaskHQ

SIZE = layout.MASK_SIZE


# ---------------------------------------------------------------------------
# Helpers writing tiny datasets in the release layout
# ---------------------------------------------------------------------------


def box(top, left, bottom, right):
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def save_mask(path, mask, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    grey = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8))
    if mode == "P":
        grey.convert("P").save(path)
    elif mode == "RGBA":
        rgba = grey.convert("RGBA")
        rgba.putalpha(255)
        rgba.save(path)
    else:
        grey.convert(mode).save(path)


def write_sample(root, image_id, parts, mode="RGB", image=True):
    for part, mask in parts.items():
        save_mask(layout.part_path(root, image_id, part), mask, mode)
    if image:
        path = layout.image_path(root, image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.full((layout.IMAGE_SIZE, layout.IMAGE_SIZE, 3), 40 + image_id % 200, np.uint8)
        Image.fromarray(pixels).save(path, quality=90)


def write_mapping(root, orig_by_id):
    lines = ["idx orig_idx orig_file"]
    lines += [f"{k} {orig} {orig + 1:06d}.jpg" for k, orig in orig_by_id.items()]
    (root / layout.MAPPING_FILE).write_text("\n".join(lines) + "\n")


FACE_PARTS = {
    "skin": box(100, 100, 400, 400),
    "l_eye": box(180, 150, 220, 230),
    "r_eye": box(180, 280, 220, 360),
    "u_lip": box(300, 200, 320, 300),
    "l_lip": box(320, 200, 340, 300),
    "hair": box(40, 80, 120, 420),
}


@pytest.fixture
def tiny_root(tmp_path):
    """Six images: ids 0-3 train, 4 val, 5 test."""
    for image_id in range(6):
        parts = dict(FACE_PARTS)
        if image_id % 2:
            parts["l_ear"] = box(200, 60, 280, 100 + image_id)
        write_sample(tmp_path, image_id, parts)
    write_mapping(tmp_path, {0: 10, 1: 20, 2: 30, 3: 162770, 4: 162771, 5: 182638})
    return tmp_path


# ---------------------------------------------------------------------------
# merge_masks
# ---------------------------------------------------------------------------


def test_merge_follows_official_order_not_alphabetical(tmp_path):
    parts = {
        "skin": box(0, 0, 300, 300),
        "l_eye": box(50, 50, 80, 90),
        "nose": box(100, 100, 150, 130),
    }
    parts["hair"] = box(0, 0, 40, 300)  # hair (13) paints over skin (1)
    write_sample(tmp_path, 7, parts, image=False)
    label = samples.merge_masks(tmp_path, 7)
    assert label.shape == (SIZE, SIZE) and label.dtype == np.uint8
    assert label[60, 60] == CLASS_IDS["l_eye"]
    assert label[120, 110] == CLASS_IDS["nose"]
    assert label[10, 10] == CLASS_IDS["hair"]
    assert label[200, 200] == CLASS_IDS["skin"]
    assert label[400, 400] == 0
    # Alphabetical order would paint skin last, over eye and nose.
    alphabetical = np.zeros((SIZE, SIZE), np.uint8)
    for part in sorted(parts):
        alphabetical[parts[part]] = PART_NAMES.index(part) + 1
    assert not np.array_equal(label, alphabetical)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1"])
def test_merge_reads_every_mask_mode(tmp_path, mode):
    write_sample(
        tmp_path, 3, {"skin": box(10, 10, 50, 50), "nose": box(20, 20, 30, 30)}, mode, False
    )
    label = samples.merge_masks(tmp_path, 3)
    expected = np.zeros((SIZE, SIZE), np.uint8)
    expected[10:50, 10:50] = 1
    expected[20:30, 20:30] = 2
    np.testing.assert_array_equal(label, expected)


def test_merge_uses_blue_channel_like_cv2(tmp_path):
    path = layout.part_path(tmp_path, 0, "skin")
    path.parent.mkdir(parents=True)
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    rgb[:10, :, 0] = 255  # red only: cv2 channel 0 (blue) is zero here
    rgb[20:30, :, 2] = 255  # blue only: foreground for g_mask.py
    Image.fromarray(rgb).save(path)
    label = samples.merge_masks(tmp_path, 0)
    assert label[:10].max() == 0 and label[20:30].min() == 1


def test_absent_parts_are_background_and_mask_folder_follows_id(tmp_path):
    write_sample(tmp_path, 4321, {"neck": box(0, 0, 10, 10)}, image=False)
    assert (tmp_path / layout.MASK_DIR / "2" / "04321_neck.png").is_file()
    label = samples.merge_masks(tmp_path, 4321)
    assert set(np.unique(label)) == {0, CLASS_IDS["neck"]}


def test_no_parts_names_folder(tmp_path):
    (tmp_path / layout.MASK_DIR / "0").mkdir(parents=True)
    with pytest.raises(ValueError, match="CelebAMask-HQ-mask-anno") as info:
        samples.merge_masks(tmp_path, 5)
    assert str(tmp_path / layout.MASK_DIR / "0") in str(info.value)


def test_misspelt_mask_folder_is_named(tmp_path):
    (tmp_path / layout.MISSPELT_MASK_DIR / "0").mkdir(parents=True)
    with pytest.raises(errors.DatasetError, match="CelebAMaskHQ-mask-anno.*rename"):
        samples.merge_masks(tmp_path, 0)


def test_wrong_mask_size_and_corrupt_mask_name_the_file(tmp_path):
    path = layout.part_path(tmp_path, 0, "skin")
    path.parent.mkdir(parents=True)
    Image.new("RGB", (256, 256)).save(path)
    with pytest.raises(errors.DatasetError, match=r"00000_skin\.png is 256x256"):
        samples.merge_masks(tmp_path, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(errors.DatasetError, match=r"cannot read mask .*00000_skin\.png"):
        samples.merge_masks(tmp_path, 0)


# ---------------------------------------------------------------------------
# split_ids
# ---------------------------------------------------------------------------


def test_split_rule_at_boundaries(tmp_path):
    write_mapping(tmp_path, {3: 162770, 1: 162771, 2: 182637, 0: 182638, 9: 0})
    assert layout.split_ids(tmp_path, "train") == [3, 9]
    assert layout.split_ids(tmp_path, "val") == [1, 2]
    assert layout.split_ids(tmp_path, "test") == [0]
    assert layout.split_ids(tmp_path, "all") == [0, 1, 2, 3, 9]


def test_split_errors(tmp_path):
    with pytest.raises(ValueError, match="train.*val.*test"):
        layout.split_ids(tmp_path, "training")
    with pytest.raises(ValueError, match="CelebA-HQ-to-CelebA-mapping.txt"):
        layout.split_ids(tmp_path, "train")


# ---------------------------------------------------------------------------
# Flip and resize
# ---------------------------------------------------------------------------


def test_flip_swaps_left_right_but_not_lips():
    label = np.zeros((4, 6), np.uint8)
    label[0, :2] = CLASS_IDS["l_eye"]
    label[1, :2] = CLASS_IDS["l_brow"]
    label[2, :2] = CLASS_IDS["r_ear"]
    label[3, :2] = CLASS_IDS["u_lip"]
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    flipped_image, flipped = augment.horizontal_flip(image, label)
    np.testing.assert_array_equal(flipped_image, image[:, ::-1])
    assert flipped[0, -1] == CLASS_IDS["r_eye"]
    assert flipped[1, -1] == CLASS_IDS["r_brow"]
    assert flipped[2, -1] == CLASS_IDS["l_ear"]
    assert flipped[3, -1] == CLASS_IDS["u_lip"]
    twice_image, twice = augment.horizontal_flip(flipped_image, flipped)
    np.testing.assert_array_equal(twice, label)
    np.testing.assert_array_equal(twice_image, image)
    assert twice.dtype == label.dtype


@pytest.mark.parametrize("size", [37, 128, 255])
def test_nearest_resize_invents_no_ids(size):
    label = np.zeros((SIZE, SIZE), np.uint8)
    label[:, 100:300] = 1
    label[150:250, 150:200] = 18
    label[200:, 290:] = 5
    resized = samples.resize_label(label, size)
    assert resized.shape == (size, size)
    assert set(np.unique(resized)) <= {0, 1, 5, 18}


# ---------------------------------------------------------------------------
# Class weights
# ---------------------------------------------------------------------------

HISTOGRAM = np.array([1000, 500, 100, 10] + [0] * (NUM_CLASSES - 4))


@pytest.mark.parametrize("scheme", class_weights.WEIGHT_SCHEMES)
def test_rarer_classes_get_larger_weights(scheme):
    weights = class_weights.class_weights_from_counts(HISTOGRAM, scheme)
    assert weights.shape == (NUM_CLASSES,) and np.all(np.isfinite(weights))
    assert weights.min() > 0
    assert weights[0] < weights[1] < weights[2] < weights[3]
    assert np.all(weights[4:] == weights[:4].max())  # absent classes: finite, no division by 0
    assert np.isclose(np.sum(HISTOGRAM * weights) / HISTOGRAM.sum(), 1.0, rtol=1e-5)


def test_max_weight_clips_and_empty_counts_give_ones():
    assert (
        class_weights.class_weights_from_counts(
            HISTOGRAM, "inverse_frequency", max_weight=3.0
        ).max()
        == 3.0
    )
    np.testing.assert_array_equal(
        class_weights.class_weights_from_counts(np.zeros(NUM_CLASSES), "enet"), 1
    )
    with pytest.raises(ValueError, match="scheme"):
        class_weights.class_weights_from_counts(HISTOGRAM, "focal")


@pytest.mark.parametrize("present", [[0], [0, 1], [0, 3, 18]])
def test_pixel_weights_finite_positive_mean_one(present):
    labels = np.array(present * 64)[:64].reshape(2, 4, 8).astype(np.uint8)
    vector = class_weights.class_weights_from_counts(HISTOGRAM, "median_frequency")
    for weights in (
        class_weights.pixel_weights(labels, vector),
        class_weights.per_image_pixel_weights(labels),
    ):
        assert weights.dtype == np.float32 and weights.shape == labels.shape
        assert np.all(np.isfinite(weights)) and weights.min() > 0
        assert np.isclose(weights.mean(), 1.0, rtol=1e-5)


# ---------------------------------------------------------------------------
# CelebAMaskHQ dataset
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["integer", "onehot"])
def test_batches_shapes_ranges_and_last_partial_batch(tiny_root, target):
    dataset = CelebAMaskHQ(tiny_root, "train", batch_size=3, image_size=33, target=target)
    assert len(dataset) == 2 and dataset.num_classes == NUM_CLASSES and dataset.image_size == 33
    x, y = dataset[0]
    assert x.shape == (3, 33, 33, 3) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 255 and x.max() > 1
    if target == "integer":
        assert y.shape == (3, 33, 33) and y.dtype == np.int32
    else:
        assert y.shape == (3, 33, 33, NUM_CLASSES) and y.dtype == np.float32
        np.testing.assert_array_equal(y.sum(-1), 1)
    dataset = CelebAMaskHQ(tiny_root, "all", batch_size=4, image_size=16)
    assert len(dataset) == 2 and dataset[1][0].shape[0] == 2
    with pytest.raises(IndexError):
        dataset[2]


def test_onehot_argmax_equals_integer_target(tiny_root):
    options = dict(split="all", batch_size=6, image_size=21, shuffle=False)
    _, integer = CelebAMaskHQ(tiny_root, target="integer", **options)[0]
    _, onehot = CelebAMaskHQ(tiny_root, target="onehot", **options)[0]
    np.testing.assert_array_equal(onehot.argmax(-1), integer)
    assert set(np.unique(integer)) <= set(range(NUM_CLASSES))


@pytest.mark.parametrize("class_weights", [*class_weights.WEIGHT_SCHEMES, [1.0] * NUM_CLASSES])
def test_dataset_weights_finite_positive_mean_one(tiny_root, class_weights):
    dataset = CelebAMaskHQ(
        tiny_root, "val", batch_size=2, image_size=16, class_weights=class_weights
    )
    x, y, w = dataset[0]
    assert w.shape == y.shape and w.dtype == np.float32
    assert np.all(np.isfinite(w)) and w.min() > 0 and np.isclose(w.mean(), 1, rtol=1e-5)


def test_bad_arguments_are_named(tiny_root):
    with pytest.raises(ValueError, match="target"):
        CelebAMaskHQ(tiny_root, target="sparse")
    with pytest.raises(ValueError, match="batch_size"):
        CelebAMaskHQ(tiny_root, batch_size=0)
    with pytest.raises(ValueError, match="class_weights"):
        CelebAMaskHQ(tiny_root, class_weights="inverse")
    with pytest.raises(ValueError, match="class weights"):
        CelebAMaskHQ(tiny_root, class_weights=[1.0, 2.0])


def test_same_seed_and_epoch_give_identical_batches(tiny_root):
    def batches(epoch):
        dataset = CelebAMaskHQ(tiny_root, "all", batch_size=6, image_size=24, augment=True)
        dataset.set_epoch(epoch)
        return dataset[0]

    first, again, later = batches(0), batches(0), batches(1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], later[0])


def test_order_reshuffles_each_epoch(tmp_path):
    write_mapping(tmp_path, {k: k for k in range(40)})
    dataset = CelebAMaskHQ(tmp_path, "all", batch_size=40, image_size=8)
    first = dataset._order.copy()
    dataset.on_epoch_end()
    assert dataset.epoch == 1 and not np.array_equal(first, dataset._order)
    assert sorted(dataset._order) == list(range(40))


def test_augmentation_keeps_ids_valid_and_swaps_sides(tiny_root):
    label = np.zeros((40, 40), np.uint8)
    label[10:20, 5:15] = CLASS_IDS["l_eye"]
    label[25:35, 5:35] = CLASS_IDS["u_lip"]
    image = np.full((40, 40, 3), 128, np.uint8)
    for seed in range(8):
        _, augmented = augment.augment_sample(image, label, np.random.default_rng(seed))
        assert set(np.unique(augmented)) <= {0, CLASS_IDS["l_eye"], CLASS_IDS["r_eye"], 11}
    flips = [augment.augment_sample(image, label, np.random.default_rng(s))[1] for s in range(8)]
    assert any((f == CLASS_IDS["r_eye"]).any() for f in flips)


def test_shard_splits_ids(tiny_root):
    dataset = CelebAMaskHQ(tiny_root, "all", batch_size=2, image_size=8)
    shards = [dataset.shard(2, index) for index in range(2)]
    assert sorted(shards[0].ids + shards[1].ids) == dataset.ids
    assert not set(shards[0].ids) & set(shards[1].ids)


def test_skip_bad_samples(tiny_root):
    layout.image_path(tiny_root, 1).write_bytes(b"not a jpeg")
    strict = CelebAMaskHQ(tiny_root, "all", batch_size=6, image_size=8, shuffle=False)
    with pytest.raises(errors.DatasetError, match=r"1\.jpg"):
        strict[0]
    lenient = CelebAMaskHQ(
        tiny_root, "all", batch_size=6, image_size=8, shuffle=False, skip_bad_samples=True
    )
    x, _ = lenient[0]
    assert x.shape[0] == 6
    assert [image_id for image_id, _ in lenient.bad_samples] == [1]


# ---------------------------------------------------------------------------
# Label cache
# ---------------------------------------------------------------------------


def test_cache_round_trip_and_invalidation(tiny_root, tmp_path):
    cache = samples.LabelCache(tiny_root, tmp_path / "cache")
    first = cache.load(1)
    assert cache.entry_path(1).is_file()
    np.testing.assert_array_equal(cache.load(1), first)
    np.testing.assert_array_equal(first, samples.merge_masks(tiny_root, 1))
    # A changed part file invalidates the entry.
    save_mask(layout.part_path(tiny_root, 1, "nose"), box(0, 0, 30, 30))
    assert cache.load(1)[5, 5] == CLASS_IDS["nose"]


def test_corrupt_cache_entry_is_not_served(tiny_root, tmp_path):
    cache = samples.LabelCache(tiny_root, tmp_path / "cache")
    expected = cache.load(2)
    cache.entry_path(2).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    np.testing.assert_array_equal(cache.load(2), expected)
    # A readable file with a wrong label but a stale fingerprint is not served either.
    Image.fromarray(np.full((SIZE, SIZE), 7, np.uint8)).save(cache.entry_path(2))
    np.testing.assert_array_equal(cache.load(2), expected)


def test_dataset_with_cache_matches_without(tiny_root, tmp_path):
    options = dict(split="all", batch_size=6, image_size=20, shuffle=False)
    plain = CelebAMaskHQ(tiny_root, **options)[0]
    cached = CelebAMaskHQ(
        tiny_root, cache_dir=tmp_path, class_weights="median_frequency", **options
    )
    assert (tmp_path / "class_counts_train.json").is_file()
    np.testing.assert_array_equal(cached[0][1], plain[1])


# ---------------------------------------------------------------------------
# check / validate_split / CLI
# ---------------------------------------------------------------------------


def test_check_finds_every_planted_defect(tiny_root, capsys):
    assert checks.check_dataset(tiny_root, progress=False) == []
    assert dg.main(["check", "--data_root", str(tiny_root)]) == 0
    truncated = layout.image_path(tiny_root, 0)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    layout.part_path(tiny_root, 1, "nose").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    for part in FACE_PARTS:
        layout.part_path(tiny_root, 2, part).unlink()
    save_mask(layout.part_path(tiny_root, 3, "hair"), np.ones((100, 100), bool))
    layout.image_path(tiny_root, 4).unlink()
    Image.new("RGB", (512, 512)).save(layout.image_path(tiny_root, 5))
    problems = checks.check_dataset(tiny_root, progress=False)
    expected = [
        "0.jpg",
        "00001_nose.png",
        "image 2 in",
        "00003_hair.png is 100x100",
        "4.jpg",
        "5.jpg is 512x512",
    ]
    for fragment in expected:
        assert sum(fragment in problem for problem in problems) == 1, (fragment, problems)
    assert len(problems) == len(expected)
    assert dg.main(["check", "--data_root", str(tiny_root)]) == 1
    assert "6 problem(s)" in capsys.readouterr().out
    with pytest.raises(errors.DatasetError, match="problem"):
        checks.validate_split(tiny_root, layout.split_ids(tiny_root, "all"))


def test_check_reports_layout_problems(tmp_path):
    (tmp_path / layout.MISSPELT_MASK_DIR).mkdir()
    problems = checks.check_dataset(tmp_path, progress=False)
    assert any("CelebA-HQ-to-CelebA-mapping.txt" in problem for problem in problems)
    assert any("rename" in problem for problem in problems)


def test_validate_split_passes_sound_data(tiny_root):
    checks.validate_split(tiny_root, layout.split_ids(tiny_root, "train"))


def test_cli_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        dg.main(["check"])
    assert info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
