import numpy as np
import pytest
from PIL import Image

from faceparsing.classes import CLASS_IDS, NUM_CLASSES, PART_NAMES
from faceparsing.data import class_weights, layout, release, synthetic
from faceparsing.images import resize_nearest

NUM_IMAGES = 40


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    synthetic.make_demo_dataset(root, NUM_IMAGES, seed=0)
    return root


def test_release_layout(demo_root):
    for image_id in (0, NUM_IMAGES - 1):
        with Image.open(demo_root / "CelebA-HQ-img" / f"{image_id}.jpg") as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (1024, 1024))
        skin = demo_root / "CelebAMask-HQ-mask-anno" / "0" / f"{image_id:05d}_skin.png"
        with Image.open(skin) as mask:
            assert (mask.mode, mask.size) == ("RGB", (512, 512))
            assert set(np.unique(np.asarray(mask))) == {0, 255}
    lines = (demo_root / release.MAPPING_FILE).read_text().splitlines()
    assert lines[0].split() == ["idx", "orig_idx", "orig_file"]
    assert len(lines) == NUM_IMAGES + 1
    idx, orig_idx, orig_file = lines[1].split()
    assert orig_file == f"{int(orig_idx) + 1:06d}.jpg"


def test_part_files_only_for_visible_parts(demo_root):
    for path in (demo_root / "CelebAMask-HQ-mask-anno" / "0").glob("*.png"):
        assert path.stem.split("_", 1)[1] in PART_NAMES
    for image_id in range(NUM_IMAGES):
        for _, path, _ in release.existing_parts(demo_root, image_id):
            assert release.read_mask(path).any(), path


def test_all_splits_present_and_boundaries_used(demo_root):
    sizes = {split: len(layout.split_ids(demo_root, split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 32, "val": 4, "test": 4}
    assert synthetic.orig_idx_for(0) == 162770  # last train index
    assert {synthetic.orig_idx_for(8), synthetic.orig_idx_for(18)} == {162771, 182637}  # val edges
    assert synthetic.orig_idx_for(9) == 182638  # first test index
    assert len({synthetic.orig_idx_for(k) for k in range(3000)}) == 3000


def test_merge_order_matters_and_every_class_appears(demo_root):
    present = np.zeros(NUM_CLASSES, int)
    for image_id in range(NUM_IMAGES):
        present += class_weights.class_pixel_counts(release.merge_masks(demo_root, image_id)) > 0
    assert present.min() > 0  # all 19 classes occur in 40 images
    # Skin runs under the eyes, so the official order is needed to see them.
    skin = release.read_mask(release.part_path(demo_root, 0, "skin")) > 0
    eye = release.read_mask(release.part_path(demo_root, 0, "l_eye")) > 0
    assert (skin & eye).sum() == eye.sum()


def test_rare_parts_are_rare(demo_root):
    present = np.zeros(NUM_CLASSES, int)
    for image_id in range(NUM_IMAGES):
        present += class_weights.class_pixel_counts(release.merge_masks(demo_root, image_id)) > 0
    common = min(present[CLASS_IDS[name]] for name in ("skin", "nose", "l_eye", "r_brow", "u_lip"))
    assert common == NUM_IMAGES
    for rare in ("eye_g", "hat", "ear_r", "neck_l"):
        assert present[CLASS_IDS[rare]] <= NUM_IMAGES // 3, rare


def test_parts_are_thick_enough_at_128(demo_root):
    label = resize_nearest(release.merge_masks(demo_root, 1), (128, 128))
    for part in ("l_brow", "u_lip", "l_lip"):
        rows = np.nonzero((label == CLASS_IDS[part]).any(axis=1))[0]
        assert len(rows) >= 4, part


def test_same_seed_same_files_other_seed_differs(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        synthetic.make_demo_dataset(tmp_path / name, 2, seed=seed, start_id=2000)
    relative = "CelebAMask-HQ-mask-anno/1/02001_skin.png"
    for path in ("CelebA-HQ-img/2001.jpg", relative, release.MAPPING_FILE):
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()
    assert (tmp_path / "a" / relative).read_bytes() != (tmp_path / "c" / relative).read_bytes()


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_images"):
        synthetic.make_demo_dataset(tmp_path, 0)


def test_worker_processes_write_the_same_files(tmp_path):
    synthetic.make_demo_dataset(tmp_path / "serial", 4, seed=3, workers=1)
    synthetic.make_demo_dataset(tmp_path / "parallel", 4, seed=3, workers=2)
    serial = sorted(
        p.relative_to(tmp_path / "serial") for p in (tmp_path / "serial").rglob("*") if p.is_file()
    )
    parallel = sorted(
        p.relative_to(tmp_path / "parallel")
        for p in (tmp_path / "parallel").rglob("*")
        if p.is_file()
    )
    assert serial == parallel and len(serial) > 4
    for relative in serial:
        assert (tmp_path / "serial" / relative).read_bytes() == (
            tmp_path / "parallel" / relative
        ).read_bytes()


# A script that, like train.py, does heavy work at import: it counts its imports.
COUNTING_SCRIPT = """
import sys
from pathlib import Path

with open(sys.argv[2], "a") as imports:
    imports.write(__name__ + "\\n")

if __name__ == "__main__":
    from faceparsing.data.synthetic import make_demo_dataset

    make_demo_dataset(sys.argv[1], 4, workers=2)
"""


def test_worker_processes_do_not_run_the_parents_script_again(repo, tmp_path):
    import os
    import subprocess
    import sys

    script, imports = tmp_path / "script.py", tmp_path / "imports.txt"
    script.write_text(COUNTING_SCRIPT)
    environment = {**os.environ, "PYTHONPATH": str(repo)}
    subprocess.run([sys.executable, str(script), str(tmp_path / "data"), str(imports)],
                   check=True, env=environment, timeout=120)  # fmt: skip
    assert imports.read_text().split() == ["__main__"]  # not "__mp_main__" in each worker
    assert len(layout.split_ids(tmp_path / "data", "all")) == 4
