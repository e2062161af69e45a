"""Faces in the wild: detect, align as CelebA-HQ was cut, parse, paste back.

Each face found in a photo is cut out as its CelebA-HQ square (see
`alignment`), parsed at the model's input size, and its logits are warped
back onto the photo with the inverse transform (bilinear per class, so the
argmax happens at the photo's own resolution). Where squares overlap, a pixel
goes to the face that claims it most (the highest probability of not being
background there); pixels outside every square are background. A detection
centred inside the square of a face at least twice its size is dropped: a
CelebA-HQ square frames one face, and such detections were false ones (on a
collar, in hair).

    from faceparsing.checkpoints import load_checkpoint
    from faceparsing.images import read_rgb
    from faceparsing.inference.faces import parse_faces

    result = parse_faces(load_checkpoint("runs/demo/best.keras"), read_rgb("photo.jpg"), 128)
    result.label                  # (H, W) uint8 label map in the official ids
    [(face.box, face.landmarks, face.score, face.pixel_counts) for face in result.faces]
"""

import dataclasses

import numpy as np

from faceparsing.classes import CLASS_NAMES, class_set_of
from faceparsing.errors import ConfigError
from faceparsing.inference import alignment
from faceparsing.inference.detection import Detection, LandmarkDetector, MTCNNDetector
from faceparsing.inference.predict import parse_photo, predict_logits

# A detection this many times smaller than a face whose square holds its centre is dropped.
NESTED_SIZE_RATIO = 2.0


@dataclasses.dataclass
class ParsedFace:
    """One face of a photo and what the model found in it.

    Attributes:
        detection: Detection. Box, five landmarks and detector score.
        crop_to_photo: float array (2, 3). Affine map from crop to photo coordinates.
        crop: uint8 array (S, S, 3). The aligned crop the model saw.
        crop_label: uint8 array (S, S). The model's label map of the crop.
        pixel_counts: dict. Class name -> pixels of the photo's label map that
            this face won (background pixels inside its square included).
    """

    detection: Detection
    crop_to_photo: np.ndarray
    crop: np.ndarray
    crop_label: np.ndarray
    pixel_counts: dict = dataclasses.field(default_factory=dict)

    @property
    def box(self):
        return self.detection.box

    @property
    def landmarks(self):
        return self.detection.landmarks

    @property
    def score(self):
        return self.detection.score

    def corners(self):
        """The crop square's corners in the photo (top-left, bottom-left, bottom-right, top-right)."""
        return alignment.crop_corners(self.crop_to_photo, self.crop.shape[0])

    def to_json(self):
        return {**self.detection.to_json(), "pixels": self.pixel_counts}


@dataclasses.dataclass
class ParsedPhoto:
    """A photo's label map (H, W) in the official ids, and its faces (empty when none was
    found and the whole photo was parsed instead)."""

    label: np.ndarray
    faces: list
    class_names: tuple = CLASS_NAMES  # the model's class set: names in the JSON

    def to_json(self):
        return {
            "height": int(self.label.shape[0]),
            "width": int(self.label.shape[1]),
            "faces": [face.to_json() for face in self.faces],
            "pixels": class_pixel_counts(self.label, class_names=self.class_names),
        }


def class_pixel_counts(label, mask=None, class_names=CLASS_NAMES):
    """{class name: pixels} of the classes present in `label` (where `mask` is True)."""
    values = (label if mask is None else label[mask]).ravel()
    counts = np.bincount(values, minlength=len(class_names))
    return {class_names[i]: int(count) for i, count in enumerate(counts) if count}


def as_detector(detector):
    """A detector callable from None (mtcnn), a callable, or a list of (5, 2) landmarks."""
    if detector is None:
        return MTCNNDetector()
    if callable(detector):
        return detector
    return LandmarkDetector(detector)


def parse_faces(model, image, size, detector=None, tta="none", crop_scale=1.0):
    """Parse every face of a photo through its CelebA-HQ alignment.

    Args:
        model: Keras model. Maps float32 RGB [0, 255] (B, S, S, 3) to logits.
        image: uint8 array (H, W, 3). The photo, RGB.
        size: int. The model's input size S (the run's `image_size`).
        detector: callable, list of (5, 2) landmarks, or None. Finds the faces
            (see `faceparsing.inference.detection`). Defaults to mtcnn.
        tta: str. "none" or "flip" (average with the mirrored crop). Defaults to "none".
        crop_scale: float. Crop side relative to CelebA-HQ's square. Defaults to 1.0.

    Returns:
        ParsedPhoto. With no face found, `faces` is empty and `label` is the
        whole photo parsed letterboxed, as `parse_photo` does.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ConfigError(f"image must be uint8 RGB (H, W, 3), got {image.dtype} {image.shape}")
    detections = drop_nested_faces(as_detector(detector)(image))
    names = class_set_of(model).names
    if not detections:
        return ParsedPhoto(parse_photo(model, image, size, tta), [], names)
    matrices = [
        alignment.crop_to_photo_matrix(face.landmarks, size, crop_scale) for face in detections
    ]
    crops = np.stack([alignment.warp_to_crop(image, matrix, size) for matrix in matrices])
    logits = predict_logits(model, crops, tta)
    label, owner = paste_faces(logits, matrices, image.shape)
    faces = [
        ParsedFace(
            detection,
            matrix,
            crop,
            crop_logits.argmax(-1).astype(np.uint8),
            class_pixel_counts(label, owner == index, names),
        )
        for index, (detection, matrix, crop, crop_logits) in enumerate(
            zip(detections, matrices, crops, logits, strict=True)
        )
    ]
    return ParsedPhoto(label, faces, names)


def drop_nested_faces(detections, min_ratio=NESTED_SIZE_RATIO):
    """Detections without those centred inside the square of a face `min_ratio` times
    their size or more."""
    squares = [alignment.crop_to_photo_matrix(face.landmarks, 1) for face in detections]
    sides = [np.hypot(*matrix[:, 0]) for matrix in squares]
    centres = [alignment.apply_affine(matrix, [[0.5, 0.5]])[0] for matrix in squares]
    return [
        face
        for index, face in enumerate(detections)
        if not any(
            sides[other] >= min_ratio * sides[index]
            and inside_unit_square(alignment.invert_affine(squares[other]), centres[index])
            for other in range(len(detections))
        )
    ]


def inside_unit_square(photo_to_crop, point):
    u, v = alignment.apply_affine(photo_to_crop, [point])[0]
    return 0 <= u <= 1 and 0 <= v <= 1


def paste_faces(logits, matrices, photo_shape):
    """Warp each face's crop logits onto the photo and keep, per pixel, the face that
    claims it most.

    Args:
        logits: float array (N, S, S, C). Logits of the N aligned crops.
        matrices: N (2, 3) arrays. Each crop's crop-to-photo matrix.
        photo_shape: (H, W, ...). The photo's shape.

    Returns:
        (label, owner): uint8 (H, W) label map, background outside every
        square; int (H, W) index of the face each pixel came from, -1 for none.
    """
    height, width = photo_shape[:2]
    label = np.zeros((height, width), np.uint8)
    owner = np.full((height, width), -1, np.int32)
    claim = np.full((height, width), -1.0, np.float32)
    for index, (face_logits, matrix) in enumerate(zip(logits, matrices, strict=True)):
        for (top, bottom, left, right), values, inside in alignment.warp_from_crop(
            face_logits, matrix, photo_shape
        ):
            face_claim = np.where(inside, 1.0 - softmax(values)[..., 0], -1.0)
            window = np.s_[top:bottom, left:right]
            better = face_claim > claim[window]
            label[window] = np.where(better, values.argmax(-1), label[window])
            owner[window] = np.where(better, index, owner[window])
            claim[window] = np.where(better, face_claim, claim[window])
    return label, owner


def softmax(logits):
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
