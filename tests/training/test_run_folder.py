import csv

import keras
import numpy as np
import pytest

from faceparsing.training import run_folder


def test_metrics_csv_has_every_row_once(tmp_path):
    rows = [
        {"epoch": 1, "loss": 1.0, "val_loss": 2.0, "val_miou": 0.1, "extra": 3.0},
        {"epoch": 2, "loss": 0.5},
    ]
    run_folder.write_metrics_csv(tmp_path / "metrics.csv", rows)
    with open(tmp_path / "metrics.csv") as handle:
        read = list(csv.DictReader(handle))
    assert [row["epoch"] for row in read] == ["1", "2"]
    assert list(read[0])[:4] == ["epoch", "loss", "val_loss", "val_miou"]
    assert read[0]["extra"] == "3" and read[1]["val_miou"] == ""


def _tiny_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    return model


def test_resume_state_round_trip_restores_weights_and_optimizer(tmp_path):
    model = _tiny_model()
    model.fit(np.ones((4, 4)), np.ones((4, 3)), verbose=0, epochs=2)
    state = run_folder.ResumeState(tmp_path)
    assert not state.resuming
    state.save(model, epoch=2, rows=[{"epoch": 1}, {"epoch": 2}], best=0.5)
    state.save(model, epoch=3, rows=[{"epoch": 1}, {"epoch": 2}, {"epoch": 3}], best=0.6)
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == [
        "epoch_0003.keras",
        "state.json",
    ]

    reloaded = run_folder.ResumeState(tmp_path)
    assert reloaded.epoch == 3 and reloaded.best == 0.6 and len(reloaded.rows) == 3
    fresh = _tiny_model()
    reloaded.restore(fresh)
    assert int(fresh.optimizer.iterations) == int(model.optimizer.iterations)
    for a, b in zip(fresh.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_broken_resume_state_is_a_clear_error(tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "state.json").write_text("{not json")
    with pytest.raises(ValueError, match="resume state .* is unreadable.*delete"):
        run_folder.ResumeState(tmp_path)
    (tmp_path / "backup" / "state.json").write_text(
        '{"epoch": 2, "rows": [], "weights": "gone.weights.h5"}'
    )
    with pytest.raises(ValueError, match="names a missing file"):
        run_folder.ResumeState(tmp_path)


def test_plot_curves_writes_png(tmp_path):
    rows = [
        {"epoch": 1, "loss": 1.0, "val_loss": 1.2, "val_miou": 0.3},
        {"epoch": 2, "loss": 0.8, "val_loss": 1.0, "val_miou": 0.5},
    ]
    run_folder.plot_curves(rows, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
