import numpy as np

from faceparsing.classes import CELEBAMASK_HQ, LAPA, PALETTE
from faceparsing.inference import overlay


def test_error_map_shows_predicted_colour_where_wrong():
    truth = np.array([[1, 2]])
    prediction = np.array([[1, 3]])
    errors = overlay.error_map(truth, prediction)
    assert tuple(errors[0, 0]) == (255, 255, 255)
    assert tuple(errors[0, 1]) == tuple(PALETTE[3])


def test_mark_faces_outlines_each_box_and_leaves_the_rest():
    image = np.full((100, 120, 3), 60, np.uint8)
    marked = overlay.mark_faces(image, [(10, 20, 50, 70), (70, 10, 110, 60)])
    assert tuple(marked[45, 10]) == (255, 255, 255) and tuple(marked[35, 110]) == (255, 255, 255)
    assert tuple(marked[45, 30]) == (60, 60, 60)  # inside the first box, away from its number
    assert tuple(marked[90, 60]) == (60, 60, 60)  # outside both
    assert (image == 60).all()  # the input is not drawn on


def test_faces_panel_is_photo_labels_overlay_and_legend():
    photo = np.full((40, 50, 3), 100, np.uint8)
    label = np.zeros((40, 50), np.uint8)
    label[10:30, 10:30] = 1
    panel = overlay.faces_panel(photo, label, 0.5, [(5, 5, 35, 35)])
    assert panel.shape[0] == 40 and panel.shape[1] > 3 * 50
    np.testing.assert_array_equal(panel[:, :50], photo)
    assert tuple(panel[5, 100 + 20]) == (255, 255, 255)  # the box on the overlay tile


def test_legend_uses_the_class_set_colours():
    label = np.full((8, 8), 10, np.uint8)  # LaPa's hair; CelebAMask-HQ's id 10 is the mouth
    swatch = overlay.legend([label], 100, LAPA)[10, 10]
    assert tuple(swatch) == tuple(LAPA.palette[10]) != tuple(CELEBAMASK_HQ.palette[10])


def test_the_pillow_floor_has_the_sized_default_font(repo):
    # overlay.py calls ImageFont.load_default(size=...), added in Pillow 10.1.
    import re

    pyproject = (repo / "pyproject.toml").read_text()
    floor = re.search(r'"pillow>=([0-9.]+)', pyproject).group(1)
    assert tuple(int(part) for part in floor.split(".")) >= (10, 1)
    source = (repo / "faceparsing" / "inference" / "overlay.py").read_text()
    assert "load_default(size=" in source
