"""Issue 8, reliability: every bad input is a one-line error, kills resume cleanly,
numbers stay finite, untrusted files stay inert.

Bad inputs are driven end to end through the scripts' `main()`; cases already
covered in the per-module test files are not repeated here.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import data_generator as dg
import train
import visualize
from faceparsing import errors
from faceparsing.data import class_weights, layout, release
from faceparsing.data.batches import BatchMaker
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.model import deeplabv3plus
from faceparsing.training import trainer

# One batch of 4 training images and one step, so a bad sample is always read;
# eager, because tracing the train step costs a minute on a busy 2-core CPU.
FAST = ("--run_eagerly=true",)
ONE_BATCH = ("--max_train_images=4", "--steps_per_epoch=1", *FAST)


@pytest.fixture
def data_copy(demo_root, tmp_path):
    """A private copy of the demo set that a test may damage."""
    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    return root


def first_train_id(root):
    return layout.split_ids(root, "train")[0]


def last_part(root, image_id):
    """The last existing part mask: `validate_split` only reads the first one."""
    return release.existing_parts(root, image_id)[-1][1]


def assert_one_line_error(capsys, *fragments):
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1, error
    assert "Traceback" not in error
    for fragment in fragments:
        assert str(fragment) in error, (fragment, error)


def save_tiny_model(path, classes=19, lambda_marker=None):
    import keras

    layers = [keras.Input((8, 8, 3))]
    if lambda_marker is not None:
        layers.append(
            keras.layers.Lambda(
                lambda x, marker=str(lambda_marker): __import__("pathlib").Path(marker).touch() or x
            )
        )
    layers.append(keras.layers.Conv2D(classes, 1))
    keras.Sequential(layers).save(path)
    return path


# ---------------------------------------------------------------------------
# Bad dataset files, found before training by validate_split (fast)
# ---------------------------------------------------------------------------


def _remove_mapping(root):
    (root / release.MAPPING_FILE).unlink()
    return [root / release.MAPPING_FILE]


def _misspell_mask_folder(root):
    (root / release.MASK_DIR).rename(root / release.MISSPELT_MASK_DIR)
    return [release.MISSPELT_MASK_DIR, "rename"]


def _remove_all_parts(root):
    image_id = first_train_id(root)
    for _, path, _ in release.existing_parts(root, image_id):
        path.unlink()
    return [f"no part masks found for image {image_id}"]


def _remove_image(root):
    path = release.image_path(root, first_train_id(root))
    path.unlink()
    return [f"missing file {path}"]


def _bomb_image(root):
    # Pillow refuses files over twice MAX_IMAGE_PIXELS; the test lowers the
    # limit to 1 Mpx, so a 1500x1500 image stands in for a real bomb.
    path = release.image_path(root, first_train_id(root))
    Image.new("RGB", (1500, 1500)).save(path, quality=50)
    return [path, "exceeds limit"]


@pytest.mark.parametrize(
    "damage",
    [_remove_mapping, _misspell_mask_folder, _remove_all_parts, _remove_image, _bomb_image],
)
def test_bad_dataset_stops_train_before_the_model_is_built(
    damage, data_copy, tiny_train_args, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1024 * 1024)
    fragments = damage(data_copy)
    monkeypatch.setattr(trainer, "build_model", pytest.fail)  # fail fast: before any model
    assert train.main(tiny_train_args(data_copy, tmp_path / "run")) == 2
    assert_one_line_error(capsys, *fragments)


def test_bomb_in_dataset_is_a_dataset_error_naming_the_file(data_copy, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1024 * 1024)
    path = _bomb_image(data_copy)[0]
    image_id = first_train_id(data_copy)
    with pytest.raises(errors.DatasetError, match=f"{image_id}.jpg"):
        layout.open_layout(data_copy).load_image(image_id, 32)
    problems = layout.open_layout(data_copy).problems([image_id], full=True)
    assert any(str(path) in problem for problem in problems)


def test_check_of_a_missing_root_exits_1(tmp_path, capsys):
    assert dg.main(["check", "--data_root", str(tmp_path / "nowhere")]) == 1
    assert f"dataset root {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# Bad dataset files that only decoding finds: they surface during fit
# ---------------------------------------------------------------------------


def _truncate_image(root):
    path = release.image_path(root, first_train_id(root))
    path.write_bytes(path.read_bytes()[:3000])
    return path


def _corrupt_mask(root):
    path = last_part(root, first_train_id(root))
    path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return path


def _shrink_mask(root):
    path = last_part(root, first_train_id(root))
    Image.new("L", (100, 100)).save(path)
    return path


@pytest.mark.parametrize("damage", [_truncate_image, _corrupt_mask, _shrink_mask])
def test_unreadable_sample_during_fit_is_one_line_naming_the_file(
    damage, data_copy, tiny_train_args, tmp_path, capsys
):
    path = damage(data_copy)
    assert train.main(tiny_train_args(data_copy, tmp_path / "run", *ONE_BATCH)) == 2
    assert_one_line_error(capsys, path)


def test_skip_bad_samples_reports_the_count(data_copy, tiny_train_args, tmp_path, capsys):
    path = _truncate_image(data_copy)
    run_dir = tmp_path / "run"
    arguments = tiny_train_args(data_copy, run_dir, *ONE_BATCH, "--skip_bad_samples=true")
    assert train.main(arguments) == 0
    out = capsys.readouterr().out
    assert f"skipped 1 unreadable samples: cannot read image {path}" in out
    with open(run_dir / "metrics.csv") as handle:
        assert [row["skipped_samples"] for row in csv.DictReader(handle)] == ["1"]


# A bad sample met after the first two batches. Keras builds batches 0-1 in
# the calling thread but reads the rest through tf.data on TensorFlow, which
# wraps the project's error in its own type. Batches of 2: the training stream
# reads 3 steps of the train split, validation 3 batches of 6 train images.
LATE = ("--batch_size=2", "--steps_per_epoch=3", *FAST)
LATE_CASES = {
    "validation": ("--train_split=val", "--val_split=train", "--max_val_images=6"),
    "training": ("--max_train_images=6", "--max_val_images=2"),
}


def third_batch_id(root, stream):
    """An image read in the third batch (index 2) of `stream` of the LATE runs."""
    ids = layout.split_ids(root, "train")[:6]
    if stream == "validation":
        return ids[4]
    order = CelebAMaskHQ(root, ids=ids, batch_size=2, shuffle=True, seed=0).order(0)
    return ids[order[4]]


def truncate_to_a_third(root, image_id):
    path = release.image_path(root, image_id)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    return path


@pytest.mark.slow
@pytest.mark.parametrize("stream", sorted(LATE_CASES))
def test_bad_sample_after_batch_2_is_one_line_or_skipped(
    stream, data_copy, tiny_train_args, tmp_path, capsys
):
    path = truncate_to_a_third(data_copy, third_batch_id(data_copy, stream))
    arguments = tiny_train_args(data_copy, tmp_path / "run", *LATE, *LATE_CASES[stream])
    assert train.main(arguments) == 2
    assert_one_line_error(capsys, f"cannot read image {path}")
    arguments = tiny_train_args(data_copy, tmp_path / "skip", *LATE, *LATE_CASES[stream])
    assert train.main([*arguments, "--skip_bad_samples=true"]) == 0
    assert f"skipped 1 unreadable samples: cannot read image {path}" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# Bad configuration, run folder and checkpoints
# ---------------------------------------------------------------------------


def test_wrong_value_type_on_the_command_line(tmp_path, capsys):
    assert train.main([f"--run_dir={tmp_path / 'run'}", "--epochs=three"]) == 2
    assert_one_line_error(capsys, "'epochs' expects int, got 'three'")


def test_unknown_key_in_a_config_file(tmp_path, capsys):
    path = tmp_path / "typo.yaml"
    path.write_text("epoch: 3\n")
    assert train.main([f"--config={path}", f"--run_dir={tmp_path / 'run'}"]) == 2
    assert_one_line_error(capsys, path, "unknown config key 'epoch'")


def test_run_dir_under_a_regular_file(demo_root, tiny_train_args, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert train.main(tiny_train_args(demo_root, blocker / "run")) == 2
    assert_one_line_error(capsys, blocker / "run", "is not writable")


def _missing_checkpoint(tmp_path):
    return tmp_path / "missing.keras", "checkpoint not found"


def _corrupt_checkpoint(tmp_path):
    path = tmp_path / "corrupt.keras"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    return path, "could not be loaded"


def _five_class_checkpoint(tmp_path):
    return save_tiny_model(tmp_path / "five.keras", classes=5), "predicts 5 classes, expected 19"


CHECKPOINT_DEFECTS = [_missing_checkpoint, _corrupt_checkpoint, _five_class_checkpoint]


@pytest.mark.parametrize("defect", CHECKPOINT_DEFECTS)
def test_bad_init_checkpoint(defect, demo_root, tiny_train_args, tmp_path, capsys, monkeypatch):
    path, message = defect(tmp_path)
    monkeypatch.setattr(trainer, "build_model", pytest.fail)  # refused before any model
    assert train.main(tiny_train_args(demo_root, tmp_path / "run", f"--init={path}")) == 2
    assert_one_line_error(capsys, path, message)


@pytest.mark.parametrize("defect", CHECKPOINT_DEFECTS)
def test_bad_checkpoint_for_visualize(defect, tmp_path, capsys):
    path, message = defect(tmp_path)
    photo = tmp_path / "face.png"
    Image.new("RGB", (20, 20)).save(photo)
    arguments = [f"--checkpoint={path}", f"--images={photo}", f"--out={tmp_path / 'out'}"]
    assert visualize.main(arguments) == 2
    assert_one_line_error(capsys, path, message)


def test_keras_file_with_python_code_is_refused(tmp_path, capsys):
    import evaluate

    marker = tmp_path / "code_ran"
    path = save_tiny_model(tmp_path / "lambda.keras", lambda_marker=marker)
    marker.unlink(missing_ok=True)  # building the model ran the lambda once
    assert evaluate.main([f"--checkpoint={path}"]) == 2
    assert_one_line_error(capsys, path, "could not be loaded")
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["text", "bomb"])
def test_unusable_photo_for_visualize(kind, trained_run, tmp_path, capsys, monkeypatch):
    photo = tmp_path / "photo.jpg"
    if kind == "text":
        photo.write_text("not an image")
    else:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
        Image.new("RGB", (100, 100)).save(photo)
    arguments = [f"--checkpoint={trained_run / 'best.keras'}", f"--images={photo}",
                 f"--out={tmp_path / 'out'}"]  # fmt: skip
    assert visualize.main(arguments) == 2
    assert_one_line_error(capsys, photo, "not a readable image")


# ---------------------------------------------------------------------------
# Numerical safety
# ---------------------------------------------------------------------------


def test_nan_loss_stops_training_with_a_clear_message(
    demo_root, tiny_train_args, tmp_path, capsys, monkeypatch
):
    make = BatchMaker.make  # what training's worker threads run

    def poisoned(self, index, epoch):
        (images, *rest), bad_samples = make(self, index, epoch)
        return (images * np.nan, *rest), bad_samples

    monkeypatch.setattr(BatchMaker, "make", poisoned)
    run_dir = tmp_path / "run"
    arguments = tiny_train_args(demo_root, run_dir, *ONE_BATCH)
    assert train.main(arguments) == 1
    assert_one_line_error(capsys, "loss became NaN or infinite in epoch 1")
    # Nothing was saved from the diverged epoch, so a rerun starts clean.
    assert not (run_dir / "backup" / "state.json").exists()
    assert not (run_dir / "last.keras").exists()


def advised_options(error_line):
    """The --key=value options that the divergence message says to add."""
    advice = error_line.split("rerun the same command with ")[-1].split(" (")[0]
    return advice.split()


@pytest.mark.slow
@pytest.mark.parametrize("diverged_epoch", [1, 2])
def test_the_advice_after_a_divergence_works(
    diverged_epoch, demo_root, tiny_train_args, tmp_path, capsys, monkeypatch
):
    make = BatchMaker.make
    poison = [True]  # what following the advice fixes (here, as with bad data, the batches)

    def poisoned(self, index, epoch):
        (images, *rest), bad_samples = make(self, index, epoch)
        images = images.astype("float32")  # one dtype for every batch (tf.data casts to it)
        if self.options.shuffle and epoch + 1 >= diverged_epoch and poison[0]:  # training
            images = images * np.nan
        return (images, *rest), bad_samples

    monkeypatch.setattr(BatchMaker, "make", poisoned)
    arguments = tiny_train_args(demo_root, tmp_path / "run", *ONE_BATCH, "--epochs=2")
    assert train.main(arguments) == 1
    error = capsys.readouterr().err.strip()
    options = advised_options(error)
    assert [option.split("=")[0] for option in options] == (
        ["--learning_rate"] if diverged_epoch == 1 else ["--init", "--run_dir", "--learning_rate"]
    ), error
    assert "--learning_rate=0.0001" in options  # a tenth of the default 1e-3
    poison[0] = False
    assert train.main([*arguments, *options]) == 0, capsys.readouterr().err
    run_dir = options[1].split("=")[1] if diverged_epoch == 2 else tmp_path / "run"
    with open(f"{run_dir}/metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert all(float(row["learning_rate"]) <= 1e-4 for row in rows)


@pytest.mark.parametrize("name", ["cross_entropy", "focal", "dice_ce"])
@pytest.mark.parametrize("scheme", ["median_frequency", "per_image"])
def test_class_weighted_losses_stay_finite_when_classes_are_absent(name, scheme):
    from faceparsing.training import losses

    labels = np.zeros((2, 8, 8), np.int32)
    labels[0, :2, :2] = 1  # classes 2..18 absent from the batch; image 1 is background only
    if scheme == "per_image":
        weights = class_weights.per_image_pixel_weights(labels)
    else:
        counts = np.zeros(19)
        counts[:3] = (1000, 10, 1)  # most classes never seen in training either
        weights = class_weights.pixel_weights(
            labels, class_weights.class_weights_from_counts(counts, scheme)
        )
    logits = np.random.default_rng(0).normal(scale=30, size=(2, 8, 8, 19)).astype("float32")
    value = float(losses.build_loss(name)(labels, logits, sample_weight=weights))
    assert np.isfinite(value) and value > 0


@pytest.fixture
def mixed_policy(request):
    import keras

    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


def _tiny_deeplab():
    return deeplabv3plus.DeepLabV3Plus(backbone="mobilenetv2", weights=None, alpha=0.35,
                                 aspp_filters=8, decoder_filters=8)  # fmt: skip


@pytest.mark.parametrize("mixed_policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
def test_mixed_precision_keeps_logits_float32(mixed_policy):
    import keras

    model = _tiny_deeplab()
    assert model.compute_dtype != "float32"  # the policy took effect
    logits = model(np.zeros((1, 32, 32, 3), "float32"))
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"


@pytest.mark.parametrize("mixed_policy", ["mixed_bfloat16"], indirect=True)
def test_mixed_bfloat16_step_gives_a_finite_float32_loss(mixed_policy):
    import keras

    from faceparsing.training import losses

    model = _tiny_deeplab()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=losses.build_loss("focal"), run_eagerly=True
    )
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 19, size=(2, 32, 32)).astype("int32")
    history = model.fit(images, labels, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# ---------------------------------------------------------------------------
# Crash safety: kill -9 at several moments, then rerun the same command
# ---------------------------------------------------------------------------

EPOCHS = 3


def _state_epoch(run_dir):
    try:
        return json.loads((run_dir / "backup" / "state.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


# Runs a script with os.replace patched so that the rename putting the named file in
# place kills the process instead (temporary file written, rename not done): the
# worst moment for a crash. Usage: python -c KILL_BEFORE_RENAME NAME SCRIPT ARGS...
KILL_BEFORE_RENAME = """
import os, runpy, signal, sys
target, script = sys.argv[1], sys.argv[2]
real_replace = os.replace
def replace(source, destination, *args, **kwargs):
    if os.path.basename(destination) == target:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(source, destination, *args, **kwargs)
os.replace = replace
sys.argv = [script, *sys.argv[3:]]
runpy.run_path(script, run_name="__main__")
"""


def _killed_before_rename(name, command):
    return [sys.executable, "-c", KILL_BEFORE_RENAME, name, *command[1:]]


def _start(command, repo):
    return subprocess.Popen(command, cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _kill_when(process, condition, timeout=180):
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if condition():
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    return process.wait(timeout=timeout)


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_and_lists_every_epoch_once(
    repo, demo_root, tiny_train_args, tmp_path
):
    from faceparsing.checkpoints import load_checkpoint

    run_dir = tmp_path / "run"
    arguments = tiny_train_args(demo_root, run_dir, f"--epochs={EPOCHS}", "--steps_per_epoch=2",
                                *FAST)  # fmt: skip
    command = [sys.executable, str(repo / "train.py"), *arguments]

    # 1. Killed in the middle of writing epoch 2's resume weights (temp file
    #    written, rename not done): the worst moment for a crash.
    first = _start(_killed_before_rename("epoch_0002.keras", command), repo)
    output = first.communicate(timeout=180)[0]
    assert first.returncode == -signal.SIGKILL, output
    assert _state_epoch(run_dir) == 1
    assert list((run_dir / "backup").glob(".epoch_0002.*.tmp*"))  # the half-written file

    # 2. Rerun, killed as soon as epoch 2 is committed (while the files derived
    #    from it, metrics.csv, last.keras and best.keras, are being written).
    second = _start(command, repo)
    code = _kill_when(second, lambda: _state_epoch(run_dir) >= 2)
    assert code in (0, -signal.SIGKILL), second.stdout.read()
    assert _state_epoch(run_dir) >= 2

    # 3. Rerun to completion.
    third = _start(command, repo)
    output = third.communicate(timeout=180)[0]
    assert third.returncode == 0, output
    with open(run_dir / "metrics.csv") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == list(range(1, EPOCHS + 1))
    assert _state_epoch(run_dir) == EPOCHS
    for name in ("best.keras", "last.keras"):
        load_checkpoint(run_dir / name)
    leftovers = [p for p in run_dir.rglob(".*") if ".tmp" in p.name]
    assert not leftovers
    assert len(list((run_dir / "backup").glob("epoch_*.keras"))) == 1


# ---------------------------------------------------------------------------
# A full file system while a checkpoint is written
# ---------------------------------------------------------------------------


@pytest.fixture
def small_file_system(tmp_path):
    """A 64 MB tmpfs (needs root, as in CI's container; skipped where mount is refused)."""
    folder = tmp_path / "fs"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_up(folder, keep=64 * 1024):
    """Fill the file system of `folder`, leaving `keep` bytes: a write starts, then fails."""
    status = os.statvfs(folder)
    free = status.f_bavail * status.f_frsize
    with open(folder / "filler", "wb") as handle:
        handle.write(bytes(max(0, free - keep)))


# Which checkpoint write meets the full disk: the file, and the epoch whose write it is.
FULL_DISK_WRITES = {"backup": ("epoch_0002.keras", 2), "last": ("last.keras", 2),
                    "best": ("best.keras", 1)}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(FULL_DISK_WRITES))
def test_full_disk_while_a_checkpoint_is_written(
    kind, small_file_system, demo_root, tiny_train_args, tmp_path, capsys, monkeypatch
):
    from faceparsing.checkpoints import load_checkpoint
    from faceparsing.training import run_folder

    name, epoch = FULL_DISK_WRITES[kind]
    run_dir = small_file_system / "run"
    real_save = run_folder.save_model_atomic

    filled = []

    def save_on_a_filling_disk(model, path):
        backup = path.stem.startswith("epoch_")
        written_epoch = int(path.stem[6:]) if backup else _state_epoch(run_dir)
        if path.name == name and written_epoch == epoch and not filled:
            fill_up(small_file_system)
            filled.append(path)
        return real_save(model, path)

    monkeypatch.setattr(run_folder, "save_model_atomic", save_on_a_filling_disk)
    arguments = tiny_train_args(demo_root, run_dir, "--epochs=2", *ONE_BATCH)
    assert train.main(arguments) == 2
    assert_one_line_error(capsys, f"No space left on device: '{run_dir}", name)
    assert not [path for path in run_dir.rglob("*") if ".tmp" in path.name]
    for checkpoint in run_dir.glob("*.keras"):
        load_checkpoint(checkpoint)
    run_folder.ResumeState(run_dir)  # readable, names an existing weights file

    (small_file_system / "filler").unlink()
    assert train.main(arguments) == 0
    with open(run_dir / "metrics.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]
    for checkpoint in ("best.keras", "last.keras"):
        load_checkpoint(run_dir / checkpoint)
