import pytest
from tiny_celebamask import write_mapping

from faceparsing.data import layout


def test_split_rule_at_boundaries(tmp_path):
    write_mapping(tmp_path, {3: 162770, 1: 162771, 2: 182637, 0: 182638, 9: 0})
    assert layout.split_ids(tmp_path, "train") == [3, 9]
    assert layout.split_ids(tmp_path, "val") == [1, 2]
    assert layout.split_ids(tmp_path, "test") == [0]
    assert layout.split_ids(tmp_path, "all") == [0, 1, 2, 3, 9]


def test_split_errors(tmp_path):
    with pytest.raises(ValueError, match="train.*val.*test"):
        layout.split_ids(tmp_path, "training")
    with pytest.raises(ValueError, match="CelebA-HQ-to-CelebA-mapping.txt"):
        layout.split_ids(tmp_path, "train")
