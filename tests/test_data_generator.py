import numpy as np
import pytest
from conftest import assert_reexports
from PIL import Image
from tiny_celebamask import FACE_PARTS, save_mask, write_tiny_root

import data_generator as dg
from faceparsing import errors
from faceparsing.data import layout, release


@pytest.fixture
def tiny_root(tmp_path):
    """Six images: ids 0-3 train, 4 val, 5 test."""
    return write_tiny_root(tmp_path)


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


def test_cli_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        dg.main(["check"])
    assert info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_public_names_are_the_package_objects():
    from faceparsing.data import augment, dataset, release

    owners = {"CelebAMaskHQ": dataset, "merge_masks": release, "split_ids": layout,
              "horizontal_flip": augment}  # fmt: skip
    assert_reexports(dg, owners)


def test_make_demo_writes_the_release_layout(tmp_path, capsys):
    root = tmp_path / "demo"
    assert dg.main(["make-demo", "--out", str(root), "--num", "10"]) == 0
    assert "wrote 10 synthetic faces" in capsys.readouterr().out
    assert layout.split_ids(root, "all") == list(range(10))
    assert layout.check_dataset(root, progress=False) == []
