import numpy as np

from faceparsing.classes import FLIP_PERMUTATION
from faceparsing.inference import predict


def test_letterbox_keeps_aspect_and_centres():
    image = np.full((50, 100, 3), 7, np.uint8)
    canvas, (top, left, height, width) = predict.letterbox(image, 64)
    assert canvas.shape == (64, 64, 3)
    assert (height, width) == (32, 64) and (top, left) == (16, 0)
    assert (canvas[top : top + height] == 7).all() and (canvas[:top] == 0).all()


def test_flip_tta_swaps_left_and_right_channels_back():
    class MirrorModel:
        """Emits logits that say 'left eye' on the left half of the picture."""

        def predict_on_batch(self, images):
            logits = np.zeros(images.shape[:3] + (19,), np.float32)
            logits[:, :, : images.shape[2] // 2, 4] = 1.0 + images[:, :, : images.shape[2] // 2, 0]
            return logits

    images = np.zeros((1, 4, 4, 3), np.float32)
    images[0, :, :2, 0] = 1.0  # left half bright: the mirror sees it on the right
    plain = predict.predict_logits(MirrorModel(), images, "none")
    averaged = predict.predict_logits(MirrorModel(), images, "flip")
    mirrored = MirrorModel().predict_on_batch(images[:, :, ::-1])[:, :, ::-1][..., FLIP_PERMUTATION]
    np.testing.assert_allclose(averaged, 0.5 * (plain + mirrored))
    assert averaged[0, 0, 3, 5] > 0  # the mirror's left eye on the right half is a right eye
