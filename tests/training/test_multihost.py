"""multihost: Keras' launcher variables, each process's share of the batches, and two
processes on localhost (JAX on CPU, gloo) training one model into one run folder."""

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import train
from faceparsing import config as config_lib
from faceparsing.checkpoints import load_checkpoint
from faceparsing.training import multihost

JOB = {
    "KERAS_DISTRIBUTION_JOB_ADDRESSES": "localhost:1234",
    "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
    "KERAS_DISTRIBUTION_PROCESS_ID": "1",
}


def _config(**changes):
    return config_lib.apply_overrides(config_lib.TrainConfig(), changes, "test")


def test_launcher_variables_select_the_multi_host_mode():
    assert not multihost.requested(_config(distribute="data_parallel"), {})
    assert multihost.requested(_config(distribute="data_parallel"), JOB)
    assert not multihost.requested(_config(distribute="multiworker"), JOB)  # refused elsewhere
    with pytest.raises(ValueError, match="distribute=none trains on one host"):
        multihost.requested(_config(distribute="none"), JOB)
    partial = {key: value for key, value in JOB.items() if not key.endswith("PROCESS_ID")}
    with pytest.raises(ValueError, match="KERAS_DISTRIBUTION_PROCESS_ID is not set"):
        multihost.requested(_config(distribute="data_parallel"), partial)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"KERAS_DISTRIBUTION_PROCESS_ID": "2"}, "must lie in 0..1"),
        (
            {"KERAS_DISTRIBUTION_NUM_PROCESSES": "two"},
            "NUM_PROCESSES must be an integer, got 'two'",
        ),
    ],
)
def test_bad_launcher_variables_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        multihost.cluster_from_environment({**JOB, **changes})


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="checks the refusal on TensorFlow")
def test_multi_host_needs_jax_and_says_so_in_one_line(
    demo_root, tiny_train_args, tmp_path, monkeypatch, capsys
):
    for key, value in JOB.items():
        monkeypatch.setenv(key, value)
    arguments = tiny_train_args(demo_root, tmp_path / "run", "--distribute=data_parallel")
    assert train.main(arguments) == 2
    assert "distribute=data_parallel needs KERAS_BACKEND=jax" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_skipped_samples_are_counted_over_every_process():
    class Source:
        bad_samples = [(3, "cannot read image 3.jpg"), (7, "cannot read image 7.jpg")]

    other_process = iter([np.array([2], np.int32), np.array([7, 9], np.int32)])

    def gather(values):  # this process and one other, as process_allgather stacks them
        theirs = next(other_process)
        width = max(len(values), len(theirs))
        return np.stack([np.pad(values, (0, width - len(values)), constant_values=-1),
                         np.pad(theirs, (0, width - len(theirs)), constant_values=-1)])  # fmt: skip

    bad = multihost.job_bad_samples([Source()], gather)
    assert [image_id for image_id, _ in bad] == [3, 7, 9]
    assert bad[2][1] == "image 9, skipped by another process"
    assert bad[1][1] == "cannot read image 7.jpg"


# The processes, their data, collectives and the run folder are under test here, not the
# architecture: a small net with batch norm compiles in seconds, DeepLabV3+ in minutes.
SMALL_NET = """
import sys
import keras
import train
from faceparsing.training import trainer

def small_net(config):
    return keras.Sequential([
        keras.Input((config.image_size, config.image_size, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(8, 3, padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Conv2D(19, 1),
    ])

trainer.build_model = small_net
sys.exit(train.main(sys.argv[1:]))
"""
# SGD: Adam's normalised steps turn rounding noise in near-zero gradients into differences as
# large as the learning rate, which would hide a real difference between the two runs.
RECIPE = ["--distribute=data_parallel", "--optimizer=sgd", "--val_split=train",
          "--max_val_images=5"]  # fmt: skip


def _free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _start(repo, arguments, log, job=None):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KERAS_DISTRIBUTION")}
    environment.update(KERAS_BACKEND="jax", **(job or {}))
    with open(log, "w") as output:
        return subprocess.Popen(
            [sys.executable, "-c", SMALL_NET, *map(str, arguments)], cwd=repo, env=environment,
            stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _start_job(repo, arguments, log_dir, tag):
    job = {
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"localhost:{_free_port()}",
        "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
    }
    return [
        _start(repo, arguments, log_dir / f"{tag}_{p}.log",
               {**job, "KERAS_DISTRIBUTION_PROCESS_ID": str(p)})
        for p in (0, 1)
    ]  # fmt: skip


def _finish(processes, timeout=240):
    return [process.wait(timeout=timeout) for process in processes]


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def two_process_run(repo, demo_root, tiny_train_args, tmp_path_factory):
    """One epoch by two processes, and by one process with the same global batch (run at once)."""
    folder = tmp_path_factory.mktemp("multihost")
    job = _start_job(repo, tiny_train_args(demo_root, folder / "job", *RECIPE), folder, "job")
    single = _start(
        repo, tiny_train_args(demo_root, folder / "single", *RECIPE), folder / "single.log"
    )
    statuses = _finish([*job, single])
    logs = {path.stem: path.read_text() for path in folder.glob("*.log")}
    return folder, statuses, logs


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_the_global_batch(two_process_run):
    folder, statuses, logs = two_process_run
    assert statuses == [0, 0, 0], logs
    job, single = folder / "job", folder / "single"
    assert [row["epoch"] for row in _rows(job)] == ["1"]
    assert [p.name for p in (job / "backup").iterdir()] in (
        ["epoch_0001.keras", "state.json"],
        ["state.json", "epoch_0001.keras"],
    )
    assert "epoch 1 |" in logs["job_0"] and "epoch 1 |" not in logs["job_1"]  # only 0 writes
    (job_row,), (single_row,) = _rows(job), _rows(single)
    assert job_row["val_miou"] == single_row["val_miou"]  # every image counted once
    for key in ("loss", "val_loss", "miou"):
        assert float(job_row[key]) == pytest.approx(float(single_row[key]), rel=1e-4), key
    job_model, single_model = (
        load_checkpoint(job / "last.keras"),
        load_checkpoint(single / "last.keras"),
    )
    for ours, theirs in zip(job_model.get_weights(), single_model.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def _wait_for(log, text, process, timeout=180):
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


@pytest.mark.slow
def test_a_killed_process_stops_the_job_and_a_rerun_of_both_resumes(
    two_process_run, repo, demo_root, tiny_train_args, tmp_path
):
    folder, statuses, _ = two_process_run
    assert statuses[:2] == [0, 0]
    run_dir = tmp_path / "job"
    shutil.copytree(folder / "job", run_dir)  # a moved run folder resumes
    arguments = tiny_train_args(demo_root, run_dir, *RECIPE, "--epochs=4")
    first, second = _start_job(repo, arguments, tmp_path, "killed")
    _wait_for(tmp_path / "killed_0.log", "Resuming", first)
    second.send_signal(signal.SIGKILL)
    assert first.wait(timeout=60) != 0  # its next collective fails: it stops, not hangs
    survivor = (tmp_path / "killed_0.log").read_text()
    assert "\nerror: " in survivor and "rerun the same command on every host" in survivor

    rerun = _start_job(repo, arguments, tmp_path, "rerun")
    assert _finish(rerun) == [0, 0], [(tmp_path / f"rerun_{p}.log").read_text() for p in (0, 1)]
    for process in (0, 1):
        assert "Resuming" in (tmp_path / f"rerun_{process}.log").read_text()
    assert [row["epoch"] for row in _rows(run_dir)] == ["1", "2", "3", "4"]
