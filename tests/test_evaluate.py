import json

import numpy as np
import pytest
from PIL import Image

import evaluate
from data_generator import merge_masks, split_ids
from faceparsing import metrics
from faceparsing.classes import CLASS_NAMES, FLIP_PERMUTATION
from faceparsing.inference import evaluation, predict


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


def test_flip_tta_swaps_left_and_right_channels_back():
    class MirrorModel:
        """Emits logits that say 'left eye' on the left half of the picture."""

        def predict_on_batch(self, images):
            logits = np.zeros(images.shape[:3] + (19,), np.float32)
            logits[:, :, : images.shape[2] // 2, 4] = 1.0 + images[:, :, : images.shape[2] // 2, 0]
            return logits

    images = np.zeros((1, 4, 4, 3), np.float32)
    images[0, :, :2, 0] = 1.0  # left half bright: the mirror sees it on the right
    plain = predict.predict_logits(MirrorModel(), images, "none")
    averaged = predict.predict_logits(MirrorModel(), images, "flip")
    mirrored = MirrorModel().predict_on_batch(images[:, :, ::-1])[:, :, ::-1][..., FLIP_PERMUTATION]
    np.testing.assert_allclose(averaged, 0.5 * (plain + mirrored))
    assert averaged[0, 0, 3, 5] > 0  # the mirror's left eye on the right half is a right eye


def test_format_table_marks_absent_classes():
    confusion = metrics.confusion_matrix([0, 1, 1], [0, 1, 0])
    report = evaluation.build_report(confusion, "x.keras", "test", 1, "none")
    table = evaluation.format_table(report)
    assert "absent" in table and "DML-CSR" in table and "this checkpoint" in table
    assert "not comparable with the published rows" in table  # 1 image is not the official split
    report["num_images"] = evaluation.OFFICIAL_TEST_IMAGES
    assert "not comparable" not in evaluation.format_table(report)


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
