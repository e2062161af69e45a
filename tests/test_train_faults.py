"""train.py meeting faults: bad dataset files (found before training, or only when fit
decodes them), a diverging loss, kill -9 at the worst moments and a full disk; each is a
one-line error, and a rerun of the same command recovers."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import train
from faceparsing.data import layout, release
from faceparsing.data.batches import BatchMaker
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.training import trainer

# One batch of 4 training images and one step, so a bad sample is always read;
# eager, because tracing the train step costs a minute on a busy 2-core CPU.
FAST = ("--run_eagerly=true",)
ONE_BATCH = ("--max_train_images=4", "--steps_per_epoch=1", *FAST)


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------------------
# Bad dataset files, found before training by validate_split (fast)
# ---------------------------------------------------------------------------


def first_train_id(root):
    return layout.split_ids(root, "train")[0]


def last_part(root, image_id):
    """The last existing part mask: `validate_split` only reads the first one."""
    return release.existing_parts(root, image_id)[-1][1]


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
    damage, data_copy, tiny_train_args, tmp_path, monkeypatch, assert_one_line_error
):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1024 * 1024)
    fragments = damage(data_copy)
    monkeypatch.setattr(trainer, "build_model", pytest.fail)  # fail fast: before any model
    assert train.main(tiny_train_args(data_copy, tmp_path / "run")) == 2
    assert_one_line_error(*fragments)


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
    damage, data_copy, tiny_train_args, tmp_path, assert_one_line_error
):
    path = damage(data_copy)
    assert train.main(tiny_train_args(data_copy, tmp_path / "run", *ONE_BATCH)) == 2
    assert_one_line_error(path)


def test_skip_bad_samples_reports_the_count(data_copy, tiny_train_args, tmp_path, capsys):
    path = _truncate_image(data_copy)
    run_dir = tmp_path / "run"
    arguments = tiny_train_args(data_copy, run_dir, *ONE_BATCH, "--skip_bad_samples=true")
    assert train.main(arguments) == 0
    out = capsys.readouterr().out
    assert f"skipped 1 unreadable samples: cannot read image {path}" in out
    assert [row["skipped_samples"] for row in _rows(run_dir)] == ["1"]


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
    stream, data_copy, tiny_train_args, tmp_path, capsys, assert_one_line_error
):
    path = truncate_to_a_third(data_copy, third_batch_id(data_copy, stream))
    arguments = tiny_train_args(data_copy, tmp_path / "run", *LATE, *LATE_CASES[stream])
    assert train.main(arguments) == 2
    assert_one_line_error(f"cannot read image {path}")
    arguments = tiny_train_args(data_copy, tmp_path / "skip", *LATE, *LATE_CASES[stream])
    assert train.main([*arguments, "--skip_bad_samples=true"]) == 0
    assert f"skipped 1 unreadable samples: cannot read image {path}" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# Divergence
# ---------------------------------------------------------------------------


def test_nan_loss_stops_training_with_a_clear_message(
    demo_root, tiny_train_args, tmp_path, monkeypatch, assert_one_line_error
):
    make = BatchMaker.make  # what training's workers run

    def poisoned(self, index, epoch):
        (images, *rest), bad_samples = make(self, index, epoch)
        return (images * np.nan, *rest), bad_samples

    monkeypatch.setattr(BatchMaker, "make", poisoned)
    run_dir = tmp_path / "run"
    # The patch lives in this process: worker threads see it, spawned processes would not.
    arguments = tiny_train_args(demo_root, run_dir, *ONE_BATCH, "--worker_type=threads")
    assert train.main(arguments) == 1
    assert_one_line_error("loss became NaN or infinite in epoch 1")
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
    arguments = tiny_train_args(
        demo_root, tmp_path / "run", *ONE_BATCH, "--epochs=2", "--worker_type=threads"
    )
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
    assert [int(row["epoch"]) for row in _rows(run_dir)] == list(range(1, EPOCHS + 1))
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
    kind, small_file_system, demo_root, tiny_train_args, monkeypatch, assert_one_line_error
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
    assert_one_line_error(f"No space left on device: '{run_dir}", name)
    assert not [path for path in run_dir.rglob("*") if ".tmp" in path.name]
    for checkpoint in run_dir.glob("*.keras"):
        load_checkpoint(checkpoint)
    run_folder.ResumeState(run_dir)  # readable, names an existing weights file

    (small_file_system / "filler").unlink()
    assert train.main(arguments) == 0
    assert [row["epoch"] for row in _rows(run_dir)] == ["1", "2"]
    for checkpoint in ("best.keras", "last.keras"):
        load_checkpoint(run_dir / checkpoint)
