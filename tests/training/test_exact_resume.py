"""A run interrupted inside an epoch and rerun ends where an uninterrupted run ends."""

import keras
import numpy as np
import pytest
from conftest import tiny_train_args

from faceparsing import config as config_lib
from faceparsing.training import run_folder, trainer


class _Interrupt(keras.callbacks.Callback):
    """Stops the process the hard way: an exception in the middle of an epoch."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            raise KeyboardInterrupt


def _config(demo_root, run_dir, *extra):
    # Augmentation, dropout, class weights, two worker threads and fewer steps than
    # one pass: every source of order and randomness a resume has to reproduce.
    arguments = tiny_train_args(
        demo_root, run_dir, "--epochs=2", "--max_train_images=12", "--steps_per_epoch=2",
        "--augment=true", "--dropout=0.3", "--class_weights=median_frequency", "--workers=2",
        "--batch_size=2", "--run_eagerly=true", *extra,
    )  # fmt: skip
    return config_lib.resolve(None, arguments)


def _final_weights(run_dir):
    state = run_folder.ResumeState(run_dir)
    model = keras.saving.load_model(run_dir / "last.keras", compile=False)
    return state.epoch, model.get_weights()


@pytest.mark.slow
def test_interrupted_in_epoch_2_and_rerun_equals_a_straight_run(demo_root, tmp_path, monkeypatch):
    trainer.train(_config(demo_root, tmp_path / "straight"))

    build_callbacks = trainer.build_callbacks
    monkeypatch.setattr(
        trainer, "build_callbacks", lambda *a, **k: [*build_callbacks(*a, **k), _Interrupt(1, 0)]
    )
    with pytest.raises(KeyboardInterrupt):
        trainer.train(_config(demo_root, tmp_path / "resumed"))
    assert run_folder.ResumeState(tmp_path / "resumed").epoch == 1
    monkeypatch.setattr(trainer, "build_callbacks", build_callbacks)
    trainer.train(_config(demo_root, tmp_path / "resumed"))

    epoch_a, straight = _final_weights(tmp_path / "straight")
    epoch_b, resumed = _final_weights(tmp_path / "resumed")
    assert epoch_a == epoch_b == 2
    for a, b in zip(straight, resumed, strict=True):
        scale = max(float(np.abs(a).max()), 1e-6)
        assert float(np.abs(a - b).max()) / scale <= 1e-4
