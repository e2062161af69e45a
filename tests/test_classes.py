import numpy as np
import pytest

from faceparsing import classes


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
