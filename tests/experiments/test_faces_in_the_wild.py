import json

import numpy as np
import pytest

from experiments import faces_in_the_wild as study
from faceparsing.data.layout import MASK_SIZE, split_ids


def test_synthetic_faces_recut_as_celebahq_keep_eyes_on_eyes(demo_root):
    ids = split_ids(demo_root, "train")[:4]
    images, labels, landmarks = study.load_originals(demo_root, ids, "synthetic", 0)
    assert images.shape == (4, MASK_SIZE, MASK_SIZE, 3) and labels.shape == (
        4,
        MASK_SIZE,
        MASK_SIZE,
    )
    # In a CelebA-HQ square the eyes sit level, a quarter of the side apart or less.
    eye_distance = np.hypot(*(landmarks[:, 1] - landmarks[:, 0]).T)
    assert (eye_distance <= MASK_SIZE / 4 + 1).all()
    assert np.abs(landmarks[:, 1, 1] - landmarks[:, 0, 1]).max() < 1.0
    with pytest.raises(RuntimeError, match="eye landmarks"):
        study.check_synthetic_landmarks(labels, landmarks + 60)  # points off the eyes


def test_scenes_move_truth_and_landmarks_together(demo_root, tmp_path):
    ids = split_ids(demo_root, "train")[:3]
    originals = study.load_originals(demo_root, ids, "synthetic", 0)
    scenes = study.make_scenes(originals, 2, seed=1, out_dir=tmp_path)
    assert [len(chosen) for _, chosen, _ in scenes] == [1, 2]
    table = study.scene_landmarks(scenes, originals[2])
    for name, chosen, matrices in scenes:
        truth = study.read_png(tmp_path / "truth" / f"{name}.png")
        assert truth.shape == study.SCENE_SIZE
        for matrix in matrices:
            side = np.hypot(*matrix[:, 0]) * MASK_SIZE
            assert 0.25 * 768 - 1 <= side <= 0.5 * 768 + 1
        for points in table[f"{name}.png"]:
            for x, y in np.asarray(points)[:2]:  # the moved eye points land on moved eyes
                assert truth[int(round(y)), int(round(x))] in study.EYE_IDS
        face_pixels = (truth > 0).sum()
        original_pixels = sum(
            (originals[1][face] > 0).sum() * np.linalg.det(matrix[:, :2])
            for face, matrix in zip(chosen, matrices, strict=True)
        )
        assert face_pixels == pytest.approx(original_pixels, rel=0.03)


@pytest.mark.slow
def test_study_runs_visualize_and_reports_ratios(trained_run, demo_root, tmp_path):
    out = tmp_path / "study"
    argv = [f"--checkpoint={trained_run / 'best.keras'}", f"--data_root={demo_root}",
            "--split=train", "--landmarks=synthetic", "--scenes=2", "--originals=3",
            f"--out={out}"]  # fmt: skip
    assert study.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["faces_found"] == report["faces_pasted"] == 3
    for key in ("aligned_all", "aligned_1face", "aligned_2faces", "letterbox_all"):
        scores = report[key]
        assert 0 <= scores["miou"] <= 1
        reference = report["aligned_originals"]["miou"]
        if reference > 0:
            assert scores["miou_ratio"] == pytest.approx(scores["miou"] / reference)
        else:  # a one-epoch model may miss every class of the originals
            assert scores["miou_ratio"] is None
    assert len(list((out / "aligned").glob("*_mask.png"))) == 2
