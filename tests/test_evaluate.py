import json

import numpy as np
import pytest
from PIL import Image

import evaluate
from data_generator import merge_masks, split_ids
from faceparsing import metrics
from faceparsing.classes import CLASS_NAMES


def test_report_matches_recomputation_from_saved_predictions(demo_root, trained_run, tmp_path):
    out = tmp_path / "eval"
    code = evaluate.main([f"--checkpoint={trained_run / 'best.keras'}", f"--data_root={demo_root}",
                          "--split=test", f"--out={out}", "--save_predictions"])  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert {
        "miou",
        "mean_f1",
        "pixel_accuracy",
        "per_class",
        "checkpoint",
        "split",
        "num_images",
    } <= set(report)
    ids = split_ids(demo_root, "test")
    assert report["num_images"] == len(ids) and report["split"] == "test"
    confusion = np.zeros((19, 19), np.int64)
    for image_id in ids:
        prediction = np.asarray(Image.open(out / "predictions" / f"{image_id}.png"))
        assert prediction.shape == (512, 512)
        confusion += metrics.confusion_matrix(merge_masks(demo_root, image_id), prediction)
    expected = metrics.scores_from_confusion(confusion)
    for key in ("miou", "mean_f1", "pixel_accuracy"):
        assert report[key] == pytest.approx(expected[key], abs=1e-4)
    assert set(report["per_class"]) == set(CLASS_NAMES)
    assert (out / "confusion.png").exists() and (out / "per_class.png").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--checkpoint=/nope/best.keras"], "checkpoint not found: /nope/best.keras"),
        (["--checkpoint={corrupt}"], "could not be loaded"),
        (["--checkpoint={good}", "--data_root=/nope/data"], "/nope/data"),
    ],
)
def test_errors_are_one_line(arguments, message, trained_run, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    arguments = [a.format(corrupt=corrupt, good=trained_run / "best.keras") for a in arguments]
    assert evaluate.main(arguments) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_checkpoint_with_wrong_class_count_is_refused(tmp_path, capsys):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(5, 1)])
    model.save(tmp_path / "five.keras")
    assert evaluate.main([f"--checkpoint={tmp_path / 'five.keras'}"]) == 2
    assert "predicts 5 classes, expected 19" in capsys.readouterr().err


@pytest.mark.slow
def test_lapa_run_evaluates_with_lapa_names(lapa_run, tmp_path, capsys):
    from faceparsing.classes import LAPA

    checkpoint = f"--checkpoint={lapa_run / 'best.keras'}"
    assert evaluate.main([checkpoint, "--split=val", f"--out={tmp_path / 'all'}"]) == 0
    table = capsys.readouterr().out
    report = json.loads((tmp_path / "all" / "report.json").read_text())
    assert tuple(report["per_class"]) == LAPA.names
    assert np.asarray(report["confusion_matrix"]).shape == (11, 11)
    assert "left eyebrow" in table and "inner mouth" in table and "DML-CSR" not in table
    assert evaluate.main([checkpoint, "--split=val", "--classes=hair", f"--out={tmp_path}"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert tuple(report["per_class"]) == ("background", "hair")
    assert report["per_class"]["hair"]["support"] > 0
