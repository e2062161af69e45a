"""Distribution modes and the JAX backend, each in fresh processes (the backend and
the logical devices are fixed when a process first imports Keras/TensorFlow)."""

import csv
import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import REPO, tiny_train_args

TWO_CPUS = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import train
sys.exit(train.main(sys.argv[1:]))
"""


def _run(code, arguments, env=None, timeout=300):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, arguments)], cwd=REPO, env=environment,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _epochs(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return [row["epoch"] for row in csv.DictReader(handle)]


def test_mirrored_on_two_logical_cpus(demo_root, tmp_path):
    run_dir = tmp_path / "mirrored"
    result = _run(TWO_CPUS, tiny_train_args(demo_root, run_dir, "--distribute=mirrored"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Distributing over 2 replicas" in result.stdout
    assert _epochs(run_dir) == ["1"] and (run_dir / "best.keras").exists()


def _free_port():
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def test_multiworker_with_two_local_workers(demo_root, tmp_path):
    run_dir = tmp_path / "multiworker"
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    code = "import sys, train; sys.exit(train.main(sys.argv[1:]))"
    arguments = tiny_train_args(demo_root, run_dir, "--distribute=multiworker")
    processes = []
    for index in range(2):
        tf_config = json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        )
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": tf_config}
        processes.append(subprocess.Popen(
            [sys.executable, "-c", code, *arguments], cwd=REPO, env=environment,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip
    try:
        outputs = [process.communicate(timeout=400) for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, (_stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-2000:]
    assert "worker 0 of 2" in outputs[0][0] and "worker 1 of 2" in outputs[1][0]
    # Each worker reads its own half of the 8 training images.
    assert "on 4 images" in outputs[0][0] and "on 4 images" in outputs[1][0]
    assert _epochs(run_dir) == ["1"] and (run_dir / "best.keras").exists()


@pytest.mark.parametrize("target", ["integer", "onehot"])
def test_jax_backend_trains_and_resumes(demo_root, tmp_path, target):
    run_dir = tmp_path / f"jax_{target}"
    code = "import sys, train; sys.exit(train.main(sys.argv[1:]))"
    env = {"KERAS_BACKEND": "jax"}
    first = _run(code, tiny_train_args(demo_root, run_dir, f"--target={target}"), env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    second = _run(
        code, tiny_train_args(demo_root, run_dir, f"--target={target}", "--epochs=2"), env=env
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Resuming" in second.stdout
    assert _epochs(run_dir) == ["1", "2"]
