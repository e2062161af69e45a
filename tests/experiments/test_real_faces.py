"""experiments/real_faces.py: the real-face benchmark and study (the set lives in ../shared)."""

import json

import numpy as np
import pytest

from experiments import imbalance, real_faces
from faceparsing.classes import CLASS_NAMES

REAL_SET_MISSING = real_faces.real_set_missing(real_faces.DEFAULT_DATA_ROOT)


@pytest.mark.parametrize("command", ["bench", "imbalance", "score --checkpoint x.keras"])
def test_without_the_real_set_every_command_says_so_in_one_line(tmp_path, capsys, command):
    argv = [*command.split(), f"--data_root={tmp_path / 'absent'}"]
    assert real_faces.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("skipped: the real CelebAMask-HQ set is not at")


def test_mean_f1_over_19_classes_counts_background_and_over_18_does_not():
    confusion = np.diag(np.arange(1, 20) * 100)
    confusion[0, 1] = 100  # background: F1 2*100/(100+200) = 2/3; skin: 2*200/(200+300) = 0.8
    report = real_faces.scores(confusion)
    f1 = [report["per_class"][name]["f1"] for name in CLASS_NAMES]
    assert f1[0] == pytest.approx(2 / 3) and f1[1] == pytest.approx(0.8)
    assert report["mean_f1"] == pytest.approx(np.mean(f1[1:]))
    assert report["mean_f1_19"] == pytest.approx(np.mean(f1))
    assert report["small_f1"] == pytest.approx(1.0)


def test_the_synthetic_study_keeps_the_real_face_section_of_the_page():
    page = "# Title\n\n## Synthetic\n\nold numbers\n"
    first = imbalance.with_real_faces_section(page, "## Real faces\n\nreal v1")
    assert first.index("real v1") < first.index("## Synthetic")
    second = imbalance.with_real_faces_section(first, "## Real faces\n\nreal v2")
    assert "real v1" not in second and second.count(imbalance.REAL_FACES_BEGIN) == 1
    assert imbalance.real_faces_section(second) == "## Real faces\n\nreal v2"
    rewritten = imbalance.with_real_faces_section("# Title\n\nnew synthetic\n", "kept")
    assert rewritten.startswith("# Title\n\n" + imbalance.REAL_FACES_BEGIN)
    assert rewritten.endswith("new synthetic\n")


def test_the_benchmark_reads_the_recipe_and_writes_caches_outside_the_data(tmp_path):
    config = real_faces.real_config(
        real_faces.DEFAULT_CONFIG, tmp_path / "real", tmp_path / "scratch", "gpu", {"epochs": 3}
    )
    assert (config.image_size, config.epochs, config.weights) == (512, 3, "none")
    assert config.pack_cache == str(tmp_path / "scratch" / "pack_512")
    assert config.cache_dir == str(tmp_path / "scratch" / "label_cache")


@pytest.mark.slow
@pytest.mark.skipif(bool(REAL_SET_MISSING), reason=REAL_SET_MISSING or "")
def test_a_few_steps_on_real_faces_train_and_score_on_val(tmp_path):
    run_dir = tmp_path / "run"
    argv = ["bench", "--budget=smoke", f"--run_dir={run_dir}", f"--scratch={tmp_path / 's'}"]
    assert real_faces.main(argv) == 0
    result = json.loads((run_dir / "real_faces.json").read_text())
    assert result["num_images"] == real_faces.SMOKE_SCORED_IMAGES
    assert all(0 <= result[key] <= 1 for key in ("miou", "mean_f1", "mean_f1_19", "small_f1"))
    assert set(result["per_class"]) == set(CLASS_NAMES)
    assert 0 < result["parameters"] <= 1_820_000 and result["train_seconds"] > 0
    assert not any(path.suffix == ".jpg" for path in tmp_path.rglob("*"))


def _study_run(variant, seed, mean_f1):
    per_class = {name: {"f1": mean_f1, "iou": mean_f1 / 2} for name in CLASS_NAMES}
    return {"variant": variant, "seed": seed, "mean_f1": mean_f1, "mean_f1_19": mean_f1,
            "miou": mean_f1 / 2, "small_f1": mean_f1, "train_seconds": 600.0,
            "per_class": per_class}  # fmt: skip


def test_the_study_section_compares_every_variant_with_cross_entropy():
    results = [_study_run("ce_none", 0, 0.5), _study_run("dice_ce_none", 0, 0.6)]
    results.append(_study_run("ce_median_frequency", 0, 0.4))
    variants = ["ce_none", "dice_ce_none", "ce_median_frequency"]
    trained = {"alpha": 0.75, "image_size": 128}
    section = real_faces.study_section(results, variants, [0], "configs/x.yaml", trained)
    assert "| dice_ce_none | 0.600 | +0.100 |" in section
    assert "Highest mean F1 (18): `dice_ce_none` (+0.100" in section
    assert "Below `ce_none`: `ce_median_frequency` (-0.100)" in section
    assert "One seed" in section and "alpha 0.75" in section
