"""trainer: the process-wide settings of a run do not outlive it."""

import dataclasses

import keras
import pytest
from conftest import tiny_train_args

from faceparsing import config as config_lib
from faceparsing.training import trainer


def test_run_environment_restores_precision_policy_and_distribution():
    config = dataclasses.replace(config_lib.TrainConfig(), mixed_precision="mixed_bfloat16")
    assert keras.mixed_precision.global_policy().name == "float32"
    with trainer.run_environment(config):
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"
    assert keras.distribution.distribution() is None


def test_run_environment_restores_after_an_error():
    config = dataclasses.replace(
        config_lib.TrainConfig(), mixed_precision="mixed_float16", distribute="multiworker"
    )
    with pytest.raises(ValueError, match="keras-team/keras#20585"):
        with trainer.run_environment(config):
            pass
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.slow
def test_a_mixed_precision_run_leaves_float32_behind(demo_root, tmp_path):
    arguments = tiny_train_args(demo_root, tmp_path / "run", "--mixed_precision=mixed_bfloat16")
    config = config_lib.resolve(None, arguments)
    trainer.train(config)
    assert keras.mixed_precision.global_policy().name == "float32"
