"""trainer: the process-wide settings of a run do not outlive it; the model a config builds,
and --init across class sets; val_miou is evaluate's mIoU."""

import dataclasses

import keras
import numpy as np
import pytest

from faceparsing import config as config_lib
from faceparsing.checkpoints import load_checkpoint
from faceparsing.classes import class_set_of
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


def _config(data_root, *extra):
    arguments = [f"--data_root={data_root}", "--backbone=mobilenetv2", "--alpha=0.1",
                 "--weights=none", "--aspp_filters=4", "--decoder_filters=4", *extra]  # fmt: skip
    return config_lib.resolve(None, arguments)


def test_init_across_class_sets_keeps_all_but_the_head(lapa_root, fixtures_dir, capsys):
    # The fixture's architecture (mobilenetv2 0.1, 4 filters) with LaPa's classes.
    model = trainer.build_model(_config(lapa_root))
    checkpoint = fixtures_dir / "main_7a2b71b_19class.keras"  # main before class sets
    source = load_checkpoint(checkpoint)
    trainer.initialise_from(model, source, checkpoint)
    assert (
        "a new head for 11 classes (lapa) replaces its 19 (celebamask_hq)"
        in capsys.readouterr().out
    )
    pairs = [  # the fixture's head is flat (saved before the head layers)
        (model.backbone, source.get_layer(model.backbone.name)),
        (model.get_layer("aspp").blocks["projection"].conv, source.get_layer("aspp_projection")),
        (model.get_layer("decoder").blocks["conv_2"].norm, source.get_layer("decoder_conv_2_bn")),
    ]
    for mine_layer, theirs_layer in pairs:
        mine_all, theirs_all = mine_layer.get_weights(), theirs_layer.get_weights()
        assert mine_all
        for mine, theirs in zip(mine_all, theirs_all, strict=True):
            np.testing.assert_array_equal(mine, theirs)
    assert model.get_layer("logits").get_weights()[0].shape[-1] == 11


def test_class_map_trains_a_smaller_head(lapa_root):
    config = _config(lapa_root, "--class_map={hair: hair, skin: [skin, nose]}")
    assert isinstance(config.class_map, str)  # saved as text in the run's config.yaml
    model = trainer.build_model(config)
    assert class_set_of(model).names == ("background", "hair", "skin")
    assert model.output_shape[-1] == 3


def test_val_miou_is_evaluate_miou_on_the_validation_ids_at_image_size(demo_root, trained_run):
    """One metric: the run folder's val_miou is evaluate's miou of the same images and size."""
    import csv

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
