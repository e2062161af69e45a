import json

import pytest

from experiments import imbalance
from faceparsing.classes import CLASS_NAMES


@pytest.mark.slow
def test_quick_study_writes_report_chart_and_results(tmp_path):
    out = tmp_path / "docs"
    argv = ["--quick", "--seeds", "0", f"--out={out}", f"--data_root={tmp_path / 'data'}",
            f"--runs={tmp_path / 'runs'}"]  # fmt: skip
    assert imbalance.main(argv) == 0
    record = json.loads((out / "imbalance_results.json").read_text())
    variants = imbalance.QUICK_BUDGET["variants"]
    assert record["seeds"] == [0] and list(record["summary"]) == variants
    assert [run["variant"] for run in record["runs"]] == variants
    for run in record["runs"]:
        assert set(run["per_class"]) == set(CLASS_NAMES) and run["train_seconds"] > 0
        assert 0 <= run["miou"] <= 1 and run["num_images"] == record["split_sizes"]["test"]
    report = (out / "imbalance.md").read_text()
    for heading in ("## F1 of the rare classes", "## IoU of the rare classes", "## Recommendation"):
        assert heading in report
    assert all(f"| {name} |" in report for name in variants)
    assert "only one seed" in record["recommendation"].lower()
    assert (out / "imbalance.png").stat().st_size > 0


def _run(variant, seed, rare_f1, miou):
    per_class = {name: {"iou": rare_f1 / 2, "f1": rare_f1} for name in CLASS_NAMES}
    return {"variant": variant, "seed": seed, "miou": miou, "mean_f1": miou,
            "train_seconds": 10.0, "per_class": per_class}  # fmt: skip


@pytest.mark.parametrize(
    "weighted_scores, expected",
    [((0.50, 0.52), "No difference"), ((0.70, 0.72), "Use class weights")],
)
def test_recommendation_needs_a_difference_beyond_the_seed_spread(weighted_scores, expected):
    results = [_run("ce_none", 0, 0.49, 0.8), _run("ce_none", 1, 0.53, 0.8)]
    results += [_run("ce_enet", seed, score, 0.8) for seed, score in enumerate(weighted_scores)]
    summary = imbalance.summarise(results, ["ce_none", "ce_enet"])
    assert summary["ce_none"]["rare_f1"]["mean"] == pytest.approx(0.51)
    assert summary["ce_none"]["rare_f1"]["half_range"] == pytest.approx(0.02)
    assert imbalance.recommend(summary, num_seeds=2).startswith(expected)
