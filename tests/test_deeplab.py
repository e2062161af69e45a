"""deeplab.py: the model's public names and its --report command."""

from conftest import assert_reexports

import deeplab
from faceparsing import checkpoints
from faceparsing.model import backbones, cost, deeplabv3plus


def test_public_names_are_the_package_objects():
    owners = {
        "DeepLabV3Plus": deeplabv3plus,
        "load_checkpoint": checkpoints,
        "BACKBONES": backbones,
    }
    assert_reexports(deeplab, owners)


def test_report_prints_a_row_per_backbone_and_stride(monkeypatch, capsys):
    monkeypatch.setattr(cost, "BACKBONES", {"mobilenetv2": backbones.BACKBONES["mobilenetv2"]})
    assert deeplab.main(["--report", "--image-size", "64"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| mobile")]
    assert [row.split("|")[2].strip() for row in rows] == ["16", "8"]
    assert all(row.split("|")[3].strip().endswith("M") for row in rows)


def test_without_report_prints_help(capsys):
    assert deeplab.main([]) == 0
    assert "--report" in capsys.readouterr().out
