"""Distribution modes and the JAX backend, each in fresh processes (the backend and
the logical devices are fixed when a process first imports Keras/TensorFlow)."""

import csv
import os
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
    environment = {**os.environ, **(env or {})}
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
    assert "Distributing over 2 replicas." in result.stdout
    assert _epochs(run_dir) == ["1"] and (run_dir / "best.keras").exists()


def test_multiworker_is_refused_with_the_upstream_reason(demo_root, tmp_path, capsys):
    import train

    assert train.main(tiny_train_args(demo_root, tmp_path / "mw", "--distribute=multiworker")) == 2
    assert "keras-team/keras#20585" in capsys.readouterr().err


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
