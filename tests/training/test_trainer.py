"""trainer: the process-wide settings of a run do not outlive it."""

import dataclasses

import keras
import pytest

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
def test_a_mixed_precision_run_leaves_float32_behind(demo_root, tiny_train_args, tmp_path):
    arguments = tiny_train_args(demo_root, tmp_path / "run", "--mixed_precision=mixed_bfloat16")
    config = config_lib.resolve(None, arguments)
    trainer.train(config)
    assert keras.mixed_precision.global_policy().name == "float32"


def test_val_miou_is_evaluate_miou_on_the_validation_ids_at_image_size(demo_root, trained_run):
    """One metric: the run folder's val_miou is evaluate's miou of the same images and size."""
    import csv

    from faceparsing import config as config_lib
    from faceparsing.checkpoints import load_checkpoint
    from faceparsing.data.dataset import CelebAMaskHQ
    from faceparsing.data.layout import split_ids
    from faceparsing.data.release import merge_masks
    from faceparsing.images import resize_nearest
    from faceparsing.inference.evaluation import evaluate
    from faceparsing.metrics import scores_from_confusion

    config = config_lib.load_run_config(trained_run / "config.yaml")
    ids = split_ids(demo_root, "val")[: config.max_val_images]
    dataset = CelebAMaskHQ(
        demo_root, ids=ids, batch_size=config.batch_size, image_size=config.image_size
    )
    confusion, _, _ = evaluate(
        load_checkpoint(trained_run / "last.keras"), dataset,
        lambda image_id: resize_nearest(merge_masks(demo_root, image_id), (config.image_size,) * 2),
        progress=False,  # labels at image_size: predictions are compared at each label's size
    )  # fmt: skip
    with open(trained_run / "metrics.csv") as handle:
        row = list(csv.DictReader(handle))[-1]
    scores = scores_from_confusion(confusion)
    for column, key in (("val_miou", "miou"), ("val_mean_f1", "mean_f1")):
        assert float(row[column]) == pytest.approx(scores[key], rel=1e-5), column
