import numpy as np
import pytest

import face_classes as fc


def test_ids_follow_official_merge_order():
    assert fc.NUM_CLASSES == 19
    assert fc.CLASS_NAMES[0] == "background"
    expected = {"skin": 1, "nose": 2, "eye_g": 3, "l_eye": 4, "r_eye": 5,
                "l_brow": 6, "r_brow": 7, "l_ear": 8, "r_ear": 9, "mouth": 10,
                "u_lip": 11, "l_lip": 12, "hair": 13, "hat": 14, "ear_r": 15,
                "neck_l": 16, "neck": 17, "cloth": 18}  # fmt: skip
    assert {name: fc.CLASS_IDS[name] for name in expected} == expected


def test_palette_matches_g_color():
    assert fc.PALETTE.shape == (19, 3)
    assert tuple(fc.PALETTE[7]) == (255, 204, 204)
    assert tuple(fc.PALETTE[13]) == (0, 0, 204)
    assert tuple(fc.PALETTE[18]) == (0, 204, 0)
    assert len({tuple(color) for color in fc.PALETTE}) == 19


def test_flip_permutation_swaps_only_left_right_pairs():
    perm = fc.FLIP_PERMUTATION
    assert (perm[[4, 5, 6, 7, 8, 9]] == [5, 4, 7, 6, 9, 8]).all()
    untouched = [i for i in range(19) if i not in (4, 5, 6, 7, 8, 9)]
    assert (perm[untouched] == untouched).all()  # lips (11, 12) stay
    assert (perm[perm] == np.arange(19)).all()


def test_every_class_has_a_display_name():
    assert set(fc.DISPLAY_NAMES) == set(fc.CLASS_NAMES)


def test_colorize_rejects_out_of_range_ids():
    assert fc.colorize(np.array([[0, 18]])).shape == (1, 2, 3)
    with pytest.raises(ValueError, match="0..18"):
        fc.colorize(np.array([[19]]))
