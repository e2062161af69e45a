import numpy as np

from faceparsing.classes import PALETTE
from faceparsing.inference import overlay


def test_error_map_shows_predicted_colour_where_wrong():
    truth = np.array([[1, 2]])
    prediction = np.array([[1, 3]])
    errors = overlay.error_map(truth, prediction)
    assert tuple(errors[0, 0]) == (255, 255, 255)
    assert tuple(errors[0, 1]) == tuple(PALETTE[3])
