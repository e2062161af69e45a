import numpy as np
import pytest
from PIL import Image
from tiny_celebamask import FACE_PARTS, save_mask

import data_generator as dg
from faceparsing import errors
from faceparsing.classes import CLASS_IDS
from faceparsing.data import layout, release


def test_check_finds_every_planted_defect(tiny_root, capsys):
    assert layout.check_dataset(tiny_root, progress=False) == []
    assert dg.main(["check", "--data_root", str(tiny_root)]) == 0
    truncated = release.image_path(tiny_root, 0)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    release.part_path(tiny_root, 1, "nose").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    for part in FACE_PARTS:
        release.part_path(tiny_root, 2, part).unlink()
    save_mask(release.part_path(tiny_root, 3, "hair"), np.ones((100, 100), bool))
    release.image_path(tiny_root, 4).unlink()
    Image.new("RGB", (512, 512)).save(release.image_path(tiny_root, 5))
    problems = layout.check_dataset(tiny_root, progress=False)
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
        layout.validate_split(tiny_root, layout.split_ids(tiny_root, "all"))


def test_check_of_a_missing_root_exits_1(tmp_path, capsys):
    assert dg.main(["check", "--data_root", str(tmp_path / "nowhere")]) == 1
    assert f"dataset root {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().out


def test_cli_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        dg.main(["check"])
    assert info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_documented_names_read_and_flip_the_release(tiny_root):
    # The module docstring's import line, used as it says: split, merge, read batches, flip.
    from data_generator import CelebAMaskHQ, horizontal_flip, merge_masks, split_ids

    assert not [name for name in dg.__all__ if not hasattr(dg, name)]  # `import *` works
    ids = split_ids(tiny_root, "train")
    assert ids == [0, 1, 2, 3]
    dataset = CelebAMaskHQ(tiny_root, "train", batch_size=4, image_size=release.MASK_SIZE,
                           augment=False, shuffle=False)  # fmt: skip
    images, labels = dataset[0]
    assert images.shape == (4, release.MASK_SIZE, release.MASK_SIZE, 3)
    for image_id, label in zip(ids, labels, strict=True):
        np.testing.assert_array_equal(label, merge_masks(tiny_root, image_id))
    # The left eye (FACE_PARTS: rows 180-220, columns 150-230) becomes a right eye, mirrored.
    assert labels[0][200, 190] == CLASS_IDS["l_eye"]
    flipped_image, flipped_label = horizontal_flip(images[0], labels[0])
    assert flipped_label[200, release.MASK_SIZE - 1 - 190] == CLASS_IDS["r_eye"]
    np.testing.assert_array_equal(flipped_image, images[0][:, ::-1])


def test_make_demo_writes_the_release_layout(tmp_path, capsys):
    root = tmp_path / "demo"
    assert dg.main(["make-demo", "--out", str(root), "--num", "10"]) == 0
    assert "wrote 10 synthetic faces" in capsys.readouterr().out
    assert layout.split_ids(root, "all") == list(range(10))
    assert layout.check_dataset(root, progress=False) == []
