import re

import numpy as np
import pytest

from faceparsing import classes
from faceparsing.errors import ConfigError


def test_ids_follow_official_merge_order():
    assert classes.NUM_CLASSES == 19
    assert classes.CLASS_NAMES[0] == "background"
    expected = {"skin": 1, "nose": 2, "eye_g": 3, "l_eye": 4, "r_eye": 5,
                "l_brow": 6, "r_brow": 7, "l_ear": 8, "r_ear": 9, "mouth": 10,
                "u_lip": 11, "l_lip": 12, "hair": 13, "hat": 14, "ear_r": 15,
                "neck_l": 16, "neck": 17, "cloth": 18}  # fmt: skip
    assert {name: classes.CLASS_IDS[name] for name in expected} == expected


def test_palette_matches_g_color():
    assert classes.PALETTE.shape == (19, 3)
    assert tuple(classes.PALETTE[7]) == (255, 204, 204)
    assert tuple(classes.PALETTE[13]) == (0, 0, 204)
    assert tuple(classes.PALETTE[18]) == (0, 204, 0)
    assert len({tuple(color) for color in classes.PALETTE}) == 19


def test_flip_permutation_swaps_only_left_right_pairs():
    perm = classes.FLIP_PERMUTATION
    assert (perm[[4, 5, 6, 7, 8, 9]] == [5, 4, 7, 6, 9, 8]).all()
    untouched = [i for i in range(19) if i not in (4, 5, 6, 7, 8, 9)]
    assert (perm[untouched] == untouched).all()  # lips (11, 12) stay
    assert (perm[perm] == np.arange(19)).all()


def test_every_class_has_a_display_name():
    assert set(classes.DISPLAY_NAMES) == set(classes.CLASS_NAMES)


def test_colorize_rejects_out_of_range_ids():
    assert classes.colorize(np.array([[0, 18]])).shape == (1, 2, 3)
    with pytest.raises(ValueError, match="0..18"):
        classes.colorize(np.array([[19]]))


# --- class sets as data (issue 23) ---


def test_lapa_is_built_in_with_its_ids_and_pairs():
    lapa = classes.load_class_set("lapa")
    assert lapa.num_classes == 11
    assert lapa.names[2:6] == ("left_eyebrow", "right_eyebrow", "left_eye", "right_eye")
    assert lapa.names[8] == "inner_mouth" and lapa.names[10] == "hair"
    assert (lapa.flip_permutation == [0, 1, 3, 2, 5, 4, 6, 7, 8, 9, 10]).all()
    # A part has CelebAMask-HQ's official colour in both sets.
    assert tuple(lapa.palette[10]) == tuple(classes.PALETTE[classes.CLASS_IDS["hair"]])


def test_class_set_survives_its_config():
    for class_set in (classes.CELEBAMASK_HQ, classes.LAPA):
        again = classes.class_set_from_config(class_set.to_config())
        assert again == class_set and (again.flip_permutation == class_set.flip_permutation).all()


def test_yaml_class_set_with_defaults(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "names: [background, hair, left_hand, right_hand]\nflip_pairs: [[left_hand, right_hand]]\n"
    )
    mine = classes.load_class_set(path)
    assert mine.name == "mine" and mine.num_classes == 4
    assert (mine.flip_permutation == [0, 1, 3, 2]).all()
    assert tuple(mine.palette[1]) == (0, 0, 204)  # hair keeps its CelebAMask-HQ colour
    assert len({tuple(colour) for colour in mine.palette}) == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("names: [background]", "'names' must list 2 to 256"),
        ("names: [background, hair, hair]", "repeated: ['hair']"),
        ("names: [background, hair]\npalette: [[0, 0, 0]]", "'palette' must hold 2"),
        ("names: [background, hair]\npalette: [[0, 0, 0], [0, 0, 256]]", "0..255"),
        ("names: [background, eye]\nflip_pairs: [[eye, nose]]", "unknown class 'nose'"),
        ("names: [a, b, c]\nflip_pairs: [[1, 2], [2, 1]]", "one flip pair only"),
        ("names: [a, b]\ncolours: []", "unknown key(s) ['colours']"),
        ("names: [a, b", "not valid YAML"),
    ],
)
def test_yaml_class_set_errors_are_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        classes.load_class_set(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_unknown_class_set_name_is_refused():
    with pytest.raises(ConfigError, match="celebamask_hq|lapa"):
        classes.load_class_set("helen")


def test_class_map_merges_and_drops():
    merged, table = classes.remap(
        classes.LAPA, "{hair: hair, face: [skin, nose, left_eye, right_eye]}"
    )
    assert merged.names == ("background", "hair", "face")
    assert table[classes.LAPA.ids["hair"]] == 1 and table[classes.LAPA.ids["left_eye"]] == 2
    assert table[classes.LAPA.ids["upper_lip"]] == 0  # not listed: dropped to background
    assert merged.flip_pairs == ()  # both eyes went to one class
    kept, _ = classes.remap(classes.LAPA, "left_eye,right_eye")  # the --classes form
    assert kept.names == ("background", "left_eye", "right_eye") and kept.flip_pairs == ((1, 2),)


@pytest.mark.parametrize(
    ("class_map", "message"),
    [("{hair: [beard]}", "'beard' is not a class of lapa"),
     ("{a: skin, b: skin}", "'skin' is mapped to both"),
     ("[hair]", "expected a mapping")],
)  # fmt: skip
def test_class_map_errors(class_map, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        classes.remap(classes.LAPA, class_map)
