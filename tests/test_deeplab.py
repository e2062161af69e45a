"""deeplab.py: the model's public names and its --report command."""

import numpy as np

import deeplab
from faceparsing.model import backbones, cost


def test_the_documented_names_build_save_and_load_a_model(tmp_path):
    # The module docstring's example: a model from deeplab's names, saved, loaded back.
    assert not [name for name in deeplab.__all__ if not hasattr(deeplab, name)]  # `import *`
    assert "mobilenetv2" in deeplab.BACKBONES
    model = deeplab.DeepLabV3Plus(backbone="mobilenetv2", output_stride=16, weights=None,
                                  alpha=0.35, aspp_filters=8, decoder_filters=8)  # fmt: skip
    images = np.random.default_rng(0).uniform(0, 255, (1, 32, 40, 3)).astype("float32")
    logits = np.asarray(model(images))
    assert logits.shape == (1, 32, 40, 19)
    model.save(tmp_path / "model.keras")
    loaded = deeplab.load_checkpoint(tmp_path / "model.keras")
    assert type(loaded) is deeplab.DeepLabV3Plus
    np.testing.assert_allclose(np.asarray(loaded(images)), logits, rtol=1e-5, atol=1e-5)


def test_report_prints_a_row_per_backbone_and_stride(monkeypatch, capsys):
    monkeypatch.setattr(cost, "BACKBONES", {"mobilenetv2": backbones.BACKBONES["mobilenetv2"]})
    assert deeplab.main(["--report", "--image-size", "64"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| mobile")]
    assert [row.split("|")[2].strip() for row in rows] == ["16", "8"]
    assert all(row.split("|")[3].strip().endswith("M") for row in rows)


def test_without_report_prints_help(capsys):
    assert deeplab.main([]) == 0
    assert "--report" in capsys.readouterr().out
