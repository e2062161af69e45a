"""train.py end to end: the run folder, resuming and --init, and every bad configuration a
one-line error before any training. (Bad data, divergence and crashes: test_train_faults.py.)"""

import csv
import json
import shutil

import numpy as np
import pytest

import train
from faceparsing.training import trainer


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------------------
# The run folder, resuming and --init
# ---------------------------------------------------------------------------


def test_one_epoch_writes_a_complete_run_folder(trained_run):
    names = {path.name for path in trained_run.iterdir()}
    assert {
        "config.yaml",
        "metrics.csv",
        "best.keras",
        "last.keras",
        "backup",
        "curves.png",
        "summary.json",
    } <= names
    rows = _rows(trained_run)
    assert [row["epoch"] for row in rows] == ["1"]
    assert {"loss", "val_loss", "val_miou"} <= set(rows[0])
    assert 0.0 <= float(rows[0]["val_miou"]) <= 1.0
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["best_epoch"] == 1


def test_rerun_resumes_without_duplicating_rows(
    demo_root, trained_run, tiny_train_args, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)  # one epoch trained in graph mode
    # Eager steps from here on: they save tracing time and may change on a resume.
    assert train.main(tiny_train_args(demo_root, run_dir, "--epochs=2", "--run_eagerly=true")) == 0
    assert "Resuming" in capsys.readouterr().out
    assert [row["epoch"] for row in _rows(run_dir)] == ["1", "2"]
    assert train.main(tiny_train_args(demo_root, run_dir, "--epochs=2", "--run_eagerly=true")) == 0
    assert "already finished 2 epochs" in capsys.readouterr().out
    assert [row["epoch"] for row in _rows(run_dir)] == ["1", "2"]


def test_a_moved_run_folder_and_dataset_resume(
    demo_root, trained_run, tiny_train_args, tmp_path, capsys
):
    run_dir, data_root = tmp_path / "moved" / "run", tmp_path / "moved" / "data"
    shutil.copytree(trained_run, run_dir)
    shutil.copytree(demo_root, data_root)
    arguments = tiny_train_args(data_root, run_dir, "--epochs=2", "--run_eagerly=true")
    assert train.main([*arguments, f"--cache_dir={tmp_path / 'cache'}"]) == 0
    assert f"Resuming {run_dir} after epoch 1" in capsys.readouterr().out
    assert [row["epoch"] for row in _rows(run_dir)] == ["1", "2"]


def test_resume_refuses_a_different_config(demo_root, trained_run, tiny_train_args, capsys):
    assert train.main(tiny_train_args(demo_root, trained_run, "--learning_rate=0.5")) == 2
    assert "holds a run with a different config (learning_rate)" in capsys.readouterr().err


def test_init_copies_weights_from_a_checkpoint(demo_root, trained_run, tiny_train_args, tmp_path):
    from faceparsing.checkpoints import load_checkpoint

    run_dir = tmp_path / "finetune"
    arguments = tiny_train_args(
        demo_root, run_dir, f"--init={trained_run / 'best.keras'}", "--learning_rate=0",
        "--run_eagerly=true",
    )  # fmt: skip
    assert train.main(arguments) == 0
    source, copy = (
        load_checkpoint(trained_run / "best.keras"),
        load_checkpoint(run_dir / "last.keras"),
    )
    kernels = [variable.path for variable in source.weights if variable.path.endswith("kernel")]
    assert any("logits" in path for path in kernels) and any("aspp" in path for path in kernels)
    copied = {variable.path: variable for variable in copy.weights}
    for variable in source.weights:  # learning rate 0: only batch-norm statistics may move
        if variable.path.endswith("kernel"):
            np.testing.assert_allclose(variable, copied[variable.path], atol=1e-7)


def test_init_with_another_architecture_is_refused(
    demo_root, trained_run, tiny_train_args, tmp_path, capsys
):
    arguments = tiny_train_args(
        demo_root, tmp_path / "other", f"--init={trained_run / 'best.keras'}", "--decoder_filters=8"
    )
    assert train.main(arguments) == 2
    assert "different architecture" in capsys.readouterr().err


def test_print_config(capsys):
    assert train.main(["--config=configs/demo.yaml", "--print_config", "--epochs=2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["epochs"] == 2 and printed["backbone"] == "mobilenetv2"


@pytest.mark.slow
def test_lapa_checkpoint_knows_its_classes(lapa_run):
    import keras

    from faceparsing.classes import LAPA, class_set_of

    model = keras.saving.load_model(lapa_run / "best.keras", compile=False)
    assert model.output_shape[-1] == 11 and class_set_of(model) == LAPA


# ---------------------------------------------------------------------------
# Bad configuration, run folder and checkpoints: one line, before any training
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--epochz=1"], "unknown config key 'epochz'"),
        (["--epochs=three"], "'epochs' expects int, got 'three'"),
        (["--backbone=vgg"], "'backbone' must be one of"),
        (["--image_size=4"], "'image_size' must lie in"),
        (["--data_root=/nonexistent/celeba"], "data_root /nonexistent/celeba does not exist"),
    ],
)
def test_user_mistakes_are_one_line_errors(tmp_path, arguments, message, assert_one_line_error):
    assert train.main([f"--run_dir={tmp_path / 'run'}", *arguments]) == 2
    assert_one_line_error(message)


def test_unknown_key_in_a_config_file(tmp_path, assert_one_line_error):
    path = tmp_path / "typo.yaml"
    path.write_text("epoch: 3\n")
    assert train.main([f"--config={path}", f"--run_dir={tmp_path / 'run'}"]) == 2
    assert_one_line_error(path, "unknown config key 'epoch'")


def test_run_dir_under_a_regular_file(demo_root, tiny_train_args, tmp_path, assert_one_line_error):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert train.main(tiny_train_args(demo_root, blocker / "run")) == 2
    assert_one_line_error(blocker / "run", "is not writable")


def test_bad_init_checkpoint(
    bad_checkpoint, demo_root, tiny_train_args, tmp_path, monkeypatch, assert_one_line_error
):
    path, message = bad_checkpoint
    monkeypatch.setattr(trainer, "build_model", pytest.fail)  # refused before any model
    assert train.main(tiny_train_args(demo_root, tmp_path / "run", f"--init={path}")) == 2
    assert_one_line_error(path, message)


def test_demo_recipe_refuses_a_folder_of_other_files(repo, tmp_path, capsys):
    data = tmp_path / "photos"
    data.mkdir()
    (data / "holiday.jpg").write_bytes(b"not a dataset")
    arguments = ["--config", str(repo / "configs" / "demo.yaml"), f"--data_root={data}",
                 f"--run_dir={tmp_path / 'run'}"]  # fmt: skip
    assert train.main(arguments) == 2
    error = capsys.readouterr().err
    assert "refusing to write a synthetic set into" in error and error.count("\n") == 1
    assert sorted(path.name for path in data.iterdir()) == ["holiday.jpg"]
