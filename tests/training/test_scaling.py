"""The GPU recipe walked on CPU: backend x devices x steps_per_execution x (straight; killed
inside epoch 2 and rerun). Each cell covers code paths the others do not:

- TensorFlow, 1 device, steps_per_execution 4 over 5-step epochs, killed in epoch 2 and
  rerun with steps_per_execution 1 (in this process: the suite's backend);
- JAX, 2 forced host devices, `data_parallel`, steps_per_execution 4, 9 validation images
  at batch 4 (a last batch of 1 that only padding splits), killed with SIGKILL in epoch 2
  and rerun, against a 1-device run of the same global batch;
- TensorFlow, 2 logical CPUs, `mirrored`: trains and validates (padded) in exact epochs.

Device counts are fixed when a backend starts, so the 2-device cells run in subprocesses.
"""

import os
import re
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from faceparsing import config as config_lib
from faceparsing.data.dataset import CelebAMaskHQ, FollowEpochs
from faceparsing.training import multihost, run_folder, trainer

# Runs train.main once per group of arguments (groups separated by ";;") in one process.
# RECIPE_LOGICAL_CPUS splits TensorFlow's CPU into that many devices; RECIPE_KILL_EPOCH
# makes the first run SIGKILL itself after its first execution of that (0-based) epoch.
JOB = """
import os, signal, sys
if os.environ.get("RECIPE_LOGICAL_CPUS"):
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    count = int(os.environ["RECIPE_LOGICAL_CPUS"])
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
import keras
import train
from faceparsing.training import trainer

class KillInEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.current = epoch, None
    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch
    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)

if os.environ.get("RECIPE_KILL_EPOCH"):
    build = trainer.build_callbacks
    kill = KillInEpoch(int(os.environ["RECIPE_KILL_EPOCH"]))
    trainer.build_callbacks = lambda *a, **k: [*build(*a, **k), kill]
groups, current = [], []
for argument in sys.argv[1:]:
    if argument == ";;":
        groups.append(current)
        current = []
    else:
        current.append(argument)
for arguments in [*groups, current]:
    status = train.main(arguments)
    if status:
        sys.exit(status)
"""


def _job(repo, runs, env=None, timeout=600):
    """Run the argument lists `runs` one after the other in a fresh process."""
    arguments = [str(argument) for run in runs for argument in [*run, ";;"]][:-1]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("KERAS_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", JOB, *arguments], cwd=repo, env=environment,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def recipe(demo_root, tiny_train_args):
    """train.py's arguments, as a function of the run folder and extra options, for two
    5-step epochs at batch 4 over an 8-image split (the stream wraps passes), with
    augmentation, dropout and two worker threads: every source of order and randomness a
    resume must reproduce. SGD: Adam's normalised steps blow rounding noise up to the
    learning rate, which would hide real differences between runs."""

    def arguments(run_dir, *extra):
        return tiny_train_args(
            demo_root, run_dir, "--epochs=2", "--steps_per_epoch=5", "--max_train_images=8",
            "--val_split=train", "--max_val_images=9", "--augment=true", "--dropout=0.3",
            "--workers=2", "--optimizer=sgd", "--learning_rate=0.05", *extra,
        )  # fmt: skip

    return arguments


def _trained(run_dir):
    """(optimizer iterations, weights, last metrics row) of a finished run folder."""
    import faceparsing.training.losses  # noqa: F401  (registers the losses for loading)

    model = keras.saving.load_model(run_dir / "last.keras")
    state = run_folder.ResumeState(run_dir)
    return int(model.optimizer.iterations), model.get_weights(), state.rows[-1]


def _assert_same_weights(ours, theirs, tolerance=1e-4):
    for a, b in zip(ours, theirs, strict=True):
        scale = max(float(np.abs(a).max()), 1e-6)
        assert float(np.abs(a - b).max()) / scale <= tolerance


class _Interrupt(keras.callbacks.Callback):
    """An exception after the first execution of the 0-based `epoch`."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.current = epoch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_tensorflow_resume_is_exact_with_partial_executions(recipe, tmp_path, monkeypatch):
    """steps_per_execution 4 over 5-step epochs: executions of 4 and 1 steps. The rerun
    changes it to 1 and still ends on the straight run's weights after exactly 2 x 5 steps."""
    options = ["--steps_per_execution=4", "--class_weights=median_frequency", "--run_eagerly=true"]
    trainer.train(config_lib.resolve(None, recipe(tmp_path / "straight", *options)))

    build_callbacks = trainer.build_callbacks
    monkeypatch.setattr(
        trainer, "build_callbacks", lambda *a, **k: [*build_callbacks(*a, **k), _Interrupt(1)]
    )
    with pytest.raises(KeyboardInterrupt):
        trainer.train(config_lib.resolve(None, recipe(tmp_path / "resumed", *options)))
    assert run_folder.ResumeState(tmp_path / "resumed").epoch == 1
    monkeypatch.setattr(trainer, "build_callbacks", build_callbacks)
    rerun = [*options[1:], "--steps_per_execution=1"]
    trainer.train(config_lib.resolve(None, recipe(tmp_path / "resumed", *rerun)))

    steps_a, straight, row_a = _trained(tmp_path / "straight")
    steps_b, resumed, row_b = _trained(tmp_path / "resumed")
    assert steps_a == steps_b == 10
    assert row_a["epoch"] == row_b["epoch"] == 2
    _assert_same_weights(straight, resumed)


@pytest.mark.slow
def test_jax_data_parallel_killed_and_rerun_equals_one_device(repo, recipe, tmp_path):
    """Held-out check (a) and (b) at once, on 2 forced host devices. Batch norm is frozen:
    trainable, it normalises 2x2 feature maps of 4 images at 32 px, which turns float
    rounding (another summation order on 2 devices) into visibly different weights."""
    env = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    options = ["--steps_per_execution=4", "--target=onehot", "--freeze_batchnorm=true"]
    parallel = recipe(tmp_path / "parallel", *options, "--distribute=data_parallel")
    killed = _job(repo, [parallel], {**env, "RECIPE_KILL_EPOCH": "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert run_folder.ResumeState(tmp_path / "parallel").epoch == 1

    single = recipe(tmp_path / "single", *options)
    rerun = _job(repo, [parallel, single], env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Resuming" in rerun.stdout
    assert "Distributing each batch of 4 over 2 devices." in rerun.stdout

    steps_a, ours, row_a = _trained(tmp_path / "parallel")
    steps_b, theirs, row_b = _trained(tmp_path / "single")
    assert steps_a == steps_b == 10
    assert [row["epoch"] for row in run_folder.ResumeState(tmp_path / "parallel").rows] == [1, 2]
    _assert_same_weights(ours, theirs)
    assert row_a["val_miou"] == pytest.approx(row_b["val_miou"], rel=1e-6)
    assert row_a["val_loss"] == pytest.approx(row_b["val_loss"], rel=1e-4)


@pytest.mark.slow
def test_tensorflow_mirrored_on_two_logical_cpus_trains_and_validates(repo, recipe, tmp_path):
    """9 validation images at batch 4 (padded) over 2 replicas, 5 steps an epoch. The weights
    are not the one-device run's, even with frozen batch norm (measured: 8.5e-2 apart,
    relative), most likely because each replica draws its own dropout mask (not isolated)."""
    mirrored = recipe(tmp_path / "mirrored", "--epochs=1", "--run_eagerly=true",
                      "--distribute=mirrored")  # fmt: skip
    result = _job(repo, [mirrored], {"RECIPE_LOGICAL_CPUS": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Distributing each batch of 4 over 2 devices." in result.stdout
    steps, _, row = _trained(tmp_path / "mirrored")
    assert steps == 5
    assert 0.0 <= row["val_miou"] <= 1.0 and np.isfinite(row["val_loss"])


@pytest.mark.parametrize(
    ("processes", "message"),
    [
        (1, "batch_size 6 must be a multiple of the 4 devices (distribute=data_parallel)"),
        (2, "batch_size 6 gives 3 images to each process, which must be a multiple of the 4"),
    ],
)
def test_batch_size_must_split_over_the_devices(processes, message):
    config = config_lib.apply_overrides(
        config_lib.TrainConfig(), {"batch_size": 6, "distribute": "data_parallel"}, "test"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        trainer.check_batch_splits(config, multihost.Cluster(processes, 0), devices=4)


def test_multiworker_is_refused_with_the_upstream_reason(
    demo_root, tiny_train_args, tmp_path, capsys
):
    import train

    assert train.main(tiny_train_args(demo_root, tmp_path / "mw", "--distribute=multiworker")) == 2
    assert "keras-team/keras#20585" in capsys.readouterr().err
    assert not (tmp_path / "mw").exists()  # refused before the run folder is written


@pytest.mark.parametrize("start_epoch", [0, 1])
def test_fit_trains_exactly_steps_per_epoch_batches_an_epoch(demo_root, start_epoch):
    """10 steps an epoch at 4 per execution, 7 batches a pass: 10 optimizer steps an epoch
    (not 12), on the batches of the run's numbering, whether fit starts at epoch 0 or
    resumes at 1, with workers building ahead."""
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(19, 1)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=4, run_eagerly=True)  # fmt: skip
    dataset = CelebAMaskHQ(demo_root, "all", ids=list(range(14)), batch_size=2, image_size=8,
                           drop_remainder=True, steps_per_epoch=10, workers=1)  # fmt: skip
    read, make = [], dataset.maker.make
    dataset.maker.make = lambda position, data_pass: (
        read.append((data_pass, position)) or make(position, data_pass)
    )
    dataset.set_epoch(start_epoch)
    with dataset:
        model.fit(dataset, epochs=3, initial_epoch=start_epoch, shuffle=False,
                  callbacks=[FollowEpochs(dataset)], verbose=0)  # fmt: skip
    assert int(model.optimizer.iterations) == 10 * (3 - start_epoch)
    expected = [divmod(step, 7) for step in range(10 * start_epoch, 30)]
    assert sorted(set(read)) == sorted(expected)  # fit's first peek reads some twice
