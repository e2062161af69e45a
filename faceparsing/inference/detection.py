"""Finding faces and their five landmarks in a photo.

A detector is any callable `detector(image) -> list[Detection]` taking a uint8
RGB array (H, W, 3). The default, `MTCNNDetector`, wraps the `mtcnn` package
(Zhang et al. 2016; MIT licence, weights inside its wheel, so it works offline),
imported only when a detector is built: the dataset and training paths never
need it. `LandmarkDetector` returns faces whose landmarks you already know
(from another detector, an annotation file, or a test).
"""

import dataclasses
import importlib.util
import os

import numpy as np

from faceparsing.errors import ConfigError
from faceparsing.inference.alignment import LANDMARK_NAMES, check_landmarks

MTCNN_INSTALL = 'pip install "mtcnn>=1.0,<1.1" (or: pip install -e ".[faces]")'
# mtcnn's default smallest face, in pixels: smaller faces hold too few pixels to parse anyway.
MIN_FACE_SIZE = 20


class FaceDetectorError(ConfigError):
    """The face detector cannot run here (package missing, wrong Keras backend)."""


@dataclasses.dataclass
class Detection:
    """One face found in a photo.

    Attributes:
        box: float array (4,). (left, top, right, bottom) in pixels.
        landmarks: float array (5, 2). (x, y) of the left eye, right eye, nose
            tip, left and right mouth corners ("left" = left in the image).
        score: float. The detector's confidence in [0, 1].
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float = 1.0

    def __post_init__(self):
        self.landmarks = check_landmarks(self.landmarks)
        self.box = np.asarray(self.box, dtype=np.float64).reshape(4)
        self.score = float(self.score)

    def to_json(self):
        return {
            "box": [round(float(value), 1) for value in self.box],
            "landmarks": {
                name: [round(float(x), 1), round(float(y), 1)]
                for name, (x, y) in zip(LANDMARK_NAMES, self.landmarks, strict=True)
            },
            "score": round(self.score, 4),
        }


def box_around(landmarks, margin=0.6):
    """A box around landmarks (when no detector box is known), `margin` x their span wider."""
    points = check_landmarks(landmarks)
    low, high = points.min(axis=0), points.max(axis=0)
    pad = margin * (high - low).max()
    return np.concatenate([low - pad, high + pad])


class LandmarkDetector:
    """A detector that "finds" the faces it was given: a list of (5, 2) landmark arrays
    (or Detections), the same for every image."""

    def __init__(self, faces):
        self.detections = [
            face if isinstance(face, Detection) else Detection(box_around(face), face)
            for face in faces
        ]

    def __call__(self, image):
        return list(self.detections)


class MTCNNDetector:
    """Faces and landmarks from the `mtcnn` package (TensorFlow backend only).

    Args:
        min_face_size: int. Smallest face searched, in pixels. Defaults to 20.
        min_score: float. Faces below this confidence are dropped. Defaults to
            0.8, mtcnn's own last threshold: clear faces pasted at an angle
            scored 0.85 where the only false detection seen scored 0.805.
    """

    def __init__(self, min_face_size=MIN_FACE_SIZE, min_score=0.8):
        mtcnn = import_mtcnn()
        self.min_face_size = int(min_face_size)
        self.min_score = float(min_score)
        self._mtcnn = mtcnn.MTCNN()

    def __call__(self, image):
        # The numpy output keeps sub-pixel landmarks (the JSON one rounds them): per face
        # [image, x1, y1, x2, y2, score, five landmark x's, five landmark y's].
        rows = self._mtcnn.detect_faces(
            np.ascontiguousarray(image, dtype=np.uint8),
            min_face_size=self.min_face_size,
            box_format="xyxy",
            output_type="numpy",
        )
        detections = [
            Detection(
                box=row[1:5], landmarks=np.stack([row[6:11], row[11:16]], axis=1), score=row[5]
            )
            for row in np.asarray(rows, dtype=np.float64).reshape(-1, 16)
            if row[5] >= self.min_score
        ]
        return sorted(detections, key=lambda face: (face.box[0], face.box[1]))


def import_mtcnn():
    """Import `mtcnn`, or raise FaceDetectorError saying what to install or change."""
    if importlib.util.find_spec("mtcnn") is None:
        raise FaceDetectorError(
            f"face alignment needs the mtcnn package: {MTCNN_INSTALL}; "
            "or pass --align none to parse whole photos"
        )
    import keras

    if keras.backend.backend() != "tensorflow":
        # mtcnn builds its networks with tf.keras, which is Keras 3 on the active backend:
        # on JAX its stages receive JAX arrays and fail (`.numpy()` is missing).
        raise FaceDetectorError(
            f"the mtcnn face detector runs on TensorFlow only, but KERAS_BACKEND is "
            f"{os.environ.get('KERAS_BACKEND', keras.backend.backend())!r}: set "
            "KERAS_BACKEND=tensorflow, pass your own landmarks, or pass --align none"
        )
    import mtcnn

    return mtcnn
