"""Every shipped config in configs/ trains one short epoch on CPU under each backend it
supports, with small-size overrides only: its optimiser, schedule, precision policy,
steps_per_execution and architecture are the ones a user runs.

Under this suite's backend, configs on a mobile backbone run in the default test run and
those on a ResNet or Xception in the slow one (`-m slow`); under the other backend all of them
run in the slow one."""

import csv
import os
import subprocess
import sys

import keras
import pytest
import yaml
from checkout import REPO

import train

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
# Backbones whose configs only the slow run trains.
HEAVY_BACKBONES = ("resnet50", "resnet101", "xception")
# The backends a distribute mode runs on (none: both).
BACKENDS = {"none": ("tensorflow", "jax"), "mirrored": ("tensorflow",),
            "data_parallel": ("jax",), "multiworker": ()}  # fmt: skip


def _key(config_path, key, default):
    return (yaml.safe_load(config_path.read_text()) or {}).get(key, default)


def _backends(config_path):
    return BACKENDS[_key(config_path, "distribute", "none")]


def _heavy(config_path):
    return _key(config_path, "backbone", "resnet50") in HEAVY_BACKBONES


def _by_weight(paths):
    """pytest params of `paths`, the heavy ones marked slow."""
    return [
        pytest.param(path, id=path.stem, marks=[pytest.mark.slow] if _heavy(path) else [])
        for path in paths
    ]


@pytest.fixture(scope="module")
def data_roots(demo_root, tmp_path_factory):
    """Each config's data: the shared synthetic CelebAMask-HQ set, or a folder into which
    `demo_images` writes a synthetic set in the config's own `dataset` layout."""
    folder = tmp_path_factory.mktemp("config_data")
    return lambda path: (
        demo_root
        if _key(path, "dataset", "auto") in ("auto", "celebamask_hq")
        else folder / _key(path, "dataset", "auto")
    )


def _small(config_path, data_root, run_dir):
    """The config at 32 px on a few synthetic images, one epoch of 2 steps, no download.
    Eager steps: the compile of a ResNet-101 costs minutes on a 2-core CPU, and the jitted
    step is walked by tests/training/test_scaling.py."""
    return [
        f"--config={config_path}", f"--data_root={data_root}", f"--run_dir={run_dir}",
        "--demo_images=24", "--image_size=32", "--max_val_images=2", "--steps_per_epoch=2",
        "--epochs=1", "--weights=none", "--verbose=0", "--run_eagerly=true",
    ]  # fmt: skip


def _without_keras_variables():
    return {key: value for key, value in os.environ.items() if not key.startswith("KERAS_")}


def _trained_one_epoch(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    return [row["epoch"] for row in rows] == ["1"] and float(rows[0]["loss"]) > 0


@pytest.mark.parametrize("config_path", _by_weight(CONFIGS))
def test_config_trains_under_this_backend(config_path, data_roots, tmp_path):
    backend = keras.backend.backend()
    if backend not in _backends(config_path):
        pytest.skip(f"{config_path.name} does not run under {backend}")
    assert train.main(_small(config_path, data_roots(config_path), tmp_path / "run")) == 0
    assert _trained_one_epoch(tmp_path / "run")


@pytest.mark.slow
@pytest.mark.parametrize("heavy", [False, True], ids=["mobile", "heavy"])
def test_every_config_trains_under_the_other_backend(heavy, data_roots, tmp_path):
    """The backend this suite does not run, the mobile (or heavy) configs in one process
    (eager JAX steps: minutes even for the mobile configs on a 2-core CPU)."""
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    runs = [path for path in CONFIGS if other in _backends(path) and _heavy(path) == heavy]
    assert runs, f"no {'heavy' if heavy else 'mobile'} config runs under {other}"
    code = (
        "import sys, train\n"
        "for arguments in [line.split('\\t') for line in sys.stdin.read().splitlines()]:\n"
        "    status = train.main(arguments)\n"
        "    if status:\n"
        "        sys.exit(status)\n"
    )
    lines = ["\t".join(_small(path, data_roots(path), tmp_path / path.stem)) for path in runs]
    result = subprocess.run(
        [sys.executable, "-c", code], input="\n".join(lines), cwd=REPO, text=True,
        capture_output=True, env={**_without_keras_variables(), "KERAS_BACKEND": other}, timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(_trained_one_epoch(tmp_path / path.stem) for path in runs)
