import numpy as np
import pytest
from PIL import Image, ImageDraw

from faceparsing.classes import CLASS_NAMES
from faceparsing.inference import alignment, faces
from faceparsing.inference.detection import Detection, LandmarkDetector
from faceparsing.inference.predict import parse_photo

SKIN = CLASS_NAMES.index("skin")
HAIR = CLASS_NAMES.index("hair")


class ColourModel:
    """A stand-in model whose answer depends only on each pixel's colour: red pixels are
    skin, green ones hair, the rest background. Pasting must put its answers back where
    the colours are in the photo."""

    def predict_on_batch(self, images):
        images = np.asarray(images, dtype=np.float32)
        logits = np.full(images.shape[:3] + (len(CLASS_NAMES),), -10.0, np.float32)
        logits[..., 0] = 0.0
        logits[..., SKIN] = (images[..., 0] - images[..., 1] - 60) / 8
        logits[..., HAIR] = (images[..., 1] - images[..., 0] - 60) / 8
        return logits


def face_landmarks(centre, eye_distance, angle_degrees):
    """Five landmarks of an upright-proportioned face (mouth as far below the eyes as they
    are apart), turned by `angle_degrees`."""
    half = eye_distance / 2
    offsets = np.array(
        [[-half, -half], [half, -half], [0, 0], [-0.7 * half, half], [0.7 * half, half]]
    )
    angle = np.deg2rad(angle_degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return offsets @ rotation.T + np.asarray(centre, dtype=float)


def scene_with_faces(shape, discs):
    """A grey photo with red discs (centre, radius) and a green patch away from them."""
    picture = Image.new("RGB", (shape[1], shape[0]), (90, 90, 90))
    draw = ImageDraw.Draw(picture)
    for (x, y), radius in discs:
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(230, 40, 40))
    return np.asarray(picture)


def test_two_faces_are_parsed_and_pasted_where_they_are():
    photo = scene_with_faces((240, 400), [((100, 120), 30), ((290, 110), 45)])
    red = photo[..., 0] > 150
    landmarks = [face_landmarks((100, 120), 30, 15), face_landmarks((290, 110), 45, -30)]
    result = faces.parse_faces(ColourModel(), photo, 96, detector=landmarks)
    assert len(result.faces) == 2 and result.label.shape == photo.shape[:2]
    skin = result.label == SKIN
    assert (skin == red).mean() > 0.99  # each disc lies inside its face's square
    for face, (x, y) in zip(result.faces, [(100, 120), (290, 110)], strict=True):
        assert result.label[y, x] == SKIN
        assert face.crop.shape == (96, 96, 3) and face.crop_label.shape == (96, 96)
    # Each face counts its own disc.
    assert result.faces[0].pixel_counts["skin"] == pytest.approx(red[:, :200].sum(), rel=0.02)
    assert result.faces[1].pixel_counts["skin"] == pytest.approx(red[:, 200:].sum(), rel=0.02)


def test_pixels_outside_every_face_are_background():
    photo = scene_with_faces((200, 300), [((80, 100), 25)])
    photo = photo.copy()
    photo[150:190, 230:290] = (230, 40, 40)  # red, but far from the face
    result = faces.parse_faces(
        ColourModel(), photo, 32, detector=[face_landmarks((80, 100), 25, 0)]
    )
    assert (result.label[150:190, 230:290] == 0).all()
    assert result.label[100, 80] == SKIN
    square = alignment.photo_window(result.faces[0].crop_to_photo, 32, photo.shape)
    top, bottom, left, right = square
    outside = np.ones(photo.shape[:2], bool)
    outside[top:bottom, left:right] = False
    assert (result.label[outside] == 0).all()


def test_no_face_falls_back_to_the_whole_photo():
    photo = scene_with_faces((60, 90), [((30, 30), 12)])
    result = faces.parse_faces(ColourModel(), photo, 32, detector=lambda image: [])
    assert result.faces == []
    np.testing.assert_array_equal(result.label, parse_photo(ColourModel(), photo, 32))
    assert result.to_json()["faces"] == [] and result.to_json()["pixels"]["skin"] > 0


def test_overlaps_go_to_the_face_that_claims_the_pixel():
    size = 16
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    shifted = np.array([[1.0, 0, 8], [0, 1.0, 0]])  # overlaps the first on columns 8..15
    sure_background = np.zeros((size, size, len(CLASS_NAMES)), np.float32)
    sure_background[..., 0] = 9.0
    unsure_hair = np.zeros_like(sure_background)
    unsure_hair[..., HAIR] = 0.5  # ~5% hair, but more than the other face's claim
    label, owner = faces.paste_faces(
        np.stack([sure_background, unsure_hair]), [identity, shifted], (16, 30)
    )
    assert (label[:, 8:24] == HAIR).all() and (owner[:, 8:24] == 1).all()
    assert (label[:, :8] == 0).all() and (owner[:, :8] == 0).all()
    assert (owner[:, 24:] == -1).all() and (label[:, 24:] == 0).all()


def test_the_model_sees_the_celebahq_crop():
    photo = scene_with_faces((200, 200), [((100, 100), 40)])
    seen = []

    class Recorder(ColourModel):
        def predict_on_batch(self, images):
            seen.append(np.asarray(images))
            return super().predict_on_batch(images)

    landmarks = face_landmarks((100, 100), 40, 10)
    faces.parse_faces(Recorder(), photo, 40, detector=[landmarks])
    matrix = alignment.crop_to_photo_matrix(landmarks, 40)
    np.testing.assert_array_equal(seen[0][0], alignment.warp_to_crop(photo, matrix, 40))


def test_tiny_deeplab_runs_end_to_end():
    from faceparsing.model.deeplabv3plus import DeepLabV3Plus

    model = DeepLabV3Plus(
        backbone="mobilenetv2", alpha=0.35, weights=None, aspp_filters=8, decoder_filters=8,
        low_level_filters=4,
    )  # fmt: skip
    photo = scene_with_faces((90, 130), [((40, 45), 15), ((95, 50), 18)])
    landmarks = [face_landmarks((40, 45), 15, 0), face_landmarks((95, 50), 18, 20)]
    result = faces.parse_faces(model, photo, 32, detector=landmarks, tta="flip")
    assert result.label.shape == (90, 130) and result.label.max() < len(CLASS_NAMES)
    record = result.to_json()
    assert [len(face["landmarks"]) for face in record["faces"]] == [5, 5]
    # Every pixel inside a square is counted once, by the face that won it.
    owned = sum(sum(face["pixels"].values()) for face in record["faces"])
    assert 0 < owned < 90 * 130
    assert sum(record["pixels"].values()) == 90 * 130


def test_detector_forms():
    landmarks = face_landmarks((50, 50), 20, 0)
    detection = Detection(box=[30, 30, 70, 75], landmarks=landmarks, score=0.8)
    assert faces.as_detector([detection])(None) == [detection]
    (found,) = faces.as_detector([landmarks])(None)
    assert (found.box[:2] < landmarks.min(axis=0)).all() and (
        found.box[2:] > landmarks.max(axis=0)
    ).all()
    assert isinstance(faces.as_detector(LandmarkDetector([landmarks])), LandmarkDetector)


def test_bad_image_is_refused():
    with pytest.raises(ValueError, match="uint8 RGB"):
        faces.parse_faces(ColourModel(), np.zeros((10, 10), np.uint8), 16, detector=[])


def test_small_detections_inside_a_larger_face_square_are_dropped():
    big = Detection(box=[0, 0, 1, 1], landmarks=face_landmarks((200, 200), 60, 0), score=0.99)
    collar = Detection(box=[0, 0, 1, 1], landmarks=face_landmarks((250, 290), 20, 0), score=0.8)
    neighbour = Detection(box=[0, 0, 1, 1], landmarks=face_landmarks((320, 200), 40, 0))
    far_small = Detection(box=[0, 0, 1, 1], landmarks=face_landmarks((600, 200), 10, 0))
    kept = faces.drop_nested_faces([big, collar, neighbour, far_small])
    # The neighbour is inside the big square too, but not half its size: two people close up.
    assert kept == [big, neighbour, far_small]
