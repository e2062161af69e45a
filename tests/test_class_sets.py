"""Class sets end to end: a LaPa-layout set trains, evaluates, draws and exports with LaPa's
11 classes; --init across class sets; class_map; old 19-class checkpoints; the demo's refusal."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

import evaluate
import export
import train
import visualize
from faceparsing import config as config_lib
from faceparsing.checkpoints import load_checkpoint
from faceparsing.classes import CELEBAMASK_HQ, CLASS_NAMES, LAPA, class_set_of
from faceparsing.inference import overlay
from faceparsing.training import trainer

MAIN_19_CLASS = "main_7a2b71b_19class.keras"  # main before class sets, in tests/fixtures


@pytest.fixture(scope="session")
def lapa_run(lapa_root, tiny_train_args, tmp_path_factory):
    """One tiny epoch of train.py on the LaPa-layout set, found from data_root alone."""
    run_dir = tmp_path_factory.mktemp("runs") / "lapa"
    assert train.main(tiny_train_args(lapa_root, run_dir)) == 0
    return run_dir


@pytest.mark.slow
def test_lapa_checkpoint_knows_its_classes(lapa_run):
    model = keras.saving.load_model(lapa_run / "best.keras", compile=False)
    assert model.output_shape[-1] == 11 and class_set_of(model) == LAPA


@pytest.mark.slow
def test_lapa_run_evaluates_with_lapa_names(lapa_run, tmp_path, capsys):
    checkpoint = f"--checkpoint={lapa_run / 'best.keras'}"
    assert evaluate.main([checkpoint, "--split=val", f"--out={tmp_path / 'all'}"]) == 0
    table = capsys.readouterr().out
    report = json.loads((tmp_path / "all" / "report.json").read_text())
    assert tuple(report["per_class"]) == LAPA.names
    assert np.asarray(report["confusion_matrix"]).shape == (11, 11)
    assert "left eyebrow" in table and "inner mouth" in table and "DML-CSR" not in table
    assert evaluate.main([checkpoint, "--split=val", "--classes=hair", f"--out={tmp_path}"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert tuple(report["per_class"]) == ("background", "hair")
    assert report["per_class"]["hair"]["support"] > 0


@pytest.mark.slow
def test_lapa_run_draws_lapa_legends_and_hair_masks(lapa_run, lapa_root, tmp_path):
    checkpoint = f"--checkpoint={lapa_run / 'best.keras'}"
    panels = tmp_path / "panels"
    arguments = [checkpoint, f"--data_root={lapa_root}", "--split=test", f"--out={panels}"]
    assert visualize.main(arguments) == 0
    assert (panels / "grid.png").is_file()
    photo = tmp_path / "face.png"
    Image.open(next((lapa_root / "test" / "images").iterdir())).save(photo)
    out = tmp_path / "hair"
    arguments = [checkpoint, f"--images={photo}", "--align=none", "--classes=hair",
                 "--save_masks", "--json", f"--out={out}"]  # fmt: skip
    assert visualize.main(arguments) == 0
    assert set(np.unique(np.asarray(Image.open(out / "face_mask.png")))) <= {0, 1}
    assert set(json.loads((out / "face.json").read_text())["pixels"]) <= {"background", "hair"}


def test_legend_uses_the_class_set_colours():
    label = np.full((8, 8), 10, np.uint8)  # LaPa's hair; CelebAMask-HQ's id 10 is the mouth
    swatch = overlay.legend([label], 100, LAPA)[10, 10]
    assert tuple(swatch) == tuple(LAPA.palette[10]) != tuple(CELEBAMASK_HQ.palette[10])


@pytest.mark.slow
def test_lapa_run_exports_onnx_with_11_named_channels(lapa_run, tmp_path):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "lapa.onnx"
    assert (
        export.main([f"--checkpoint={lapa_run / 'best.keras'}", "--format=onnx", f"--out={out}"])
        == 0
    )
    proto = onnx.load(str(out))
    assert proto.graph.output[0].type.tensor_type.shape.dim[3].dim_value == 11
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    assert metadata["class_names"].split(",") == list(LAPA.names)
    assert json.loads(metadata["class_set"])["flip_pairs"] == [[2, 3], [4, 5]]


def _config(data_root, *extra):
    arguments = [f"--data_root={data_root}", "--backbone=mobilenetv2", "--alpha=0.1",
                 "--weights=none", "--aspp_filters=4", "--decoder_filters=4", *extra]  # fmt: skip
    return config_lib.resolve(None, arguments)


def test_init_across_class_sets_keeps_all_but_the_head(lapa_root, fixtures_dir, capsys):
    # The fixture's architecture (mobilenetv2 0.1, 4 filters) with LaPa's classes.
    model = trainer.build_model(_config(lapa_root))
    source = load_checkpoint(fixtures_dir / MAIN_19_CLASS)
    trainer.initialise_from(model, source, fixtures_dir / MAIN_19_CLASS)
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


@pytest.mark.slow
def test_19_class_checkpoint_of_main_loads_and_evaluates_unchanged(
    fixtures_dir, demo_root, tmp_path
):
    expected = json.loads((fixtures_dir / "main_7a2b71b_19class.expected.json").read_text())
    model = load_checkpoint(fixtures_dir / MAIN_19_CLASS)
    assert class_set_of(model) == CELEBAMASK_HQ
    images = (np.arange(2 * 32 * 40 * 3).reshape(2, 32, 40, 3) % 256).astype("float32")
    logits = np.asarray(model.predict_on_batch(images))
    np.testing.assert_allclose(logits[0, 0, 0], expected["logits_at_0_0"], rtol=1e-4, atol=1e-4)
    assert (
        np.bincount(logits.argmax(-1).ravel(), minlength=19).tolist()
        == expected["argmax_histogram"]
    )
    arguments = [f"--checkpoint={fixtures_dir / MAIN_19_CLASS}", f"--data_root={demo_root}", "--split=test",
                 "--max_images=2", "--image_size=32", f"--out={tmp_path}"]  # fmt: skip
    assert evaluate.main(arguments) == 0
    assert tuple(json.loads((tmp_path / "report.json").read_text())["per_class"]) == CLASS_NAMES


def test_demo_recipe_refuses_a_folder_of_other_files(repo, tmp_path, capsys):
    data = tmp_path / "photos"
    data.mkdir()
    (data / "holiday.jpg").write_bytes(b"not a dataset")
    arguments = ["--config", str(repo / "configs" / "demo.yaml"), f"--data_root={data}",
                 f"--run_dir={tmp_path / 'run'}"]  # fmt: skip
    assert train.main(arguments) == 2
    error = capsys.readouterr().err
    assert "refusing to write a synthetic set into" in error and error.count("\n") == 1
    assert sorted(path.name for path in data.iterdir()) == ["holiday.jpg"]
