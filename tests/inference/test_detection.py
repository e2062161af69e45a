import os
import subprocess
import sys

import numpy as np
import pytest

from faceparsing.inference import alignment, detection

data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def detector():
    return detection.MTCNNDetector()


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()  # 512x512 RGB, one face near the top left


def test_finds_the_astronauts_face_and_landmarks(detector, astronaut):
    (face,) = detector(astronaut)
    left, top, right, bottom = face.box
    assert face.score > 0.95
    assert 150 < left < right < 300 and 30 < top < bottom < 200
    eyes, nose, mouth = face.landmarks[:2], face.landmarks[2], face.landmarks[3:]
    assert ((face.landmarks >= face.box[:2]) & (face.landmarks <= face.box[2:])).all()
    assert eyes[0, 0] < eyes[1, 0] and mouth[0, 0] < mouth[1, 0]  # left is left in the image
    assert eyes[:, 1].max() < nose[1] < mouth[:, 1].min()  # eyes above nose above mouth
    # Sub-pixel landmarks, not rounded ones.
    assert not np.allclose(face.landmarks, np.round(face.landmarks))


def test_two_astronauts_two_faces_in_reading_order(detector, astronaut):
    pair = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
    found = detector(pair)
    assert len(found) == 2
    assert found[0].box[0] < 512 < found[1].box[0]


def test_no_face_in_a_blank_photo(detector):
    assert detector(np.full((120, 160, 3), 128, np.uint8)) == []


def test_crop_of_an_aligned_face_is_nearly_the_identity(detector, astronaut):
    # Cut the face as CelebA-HQ was cut, detect again in the crop: the crop's own square
    # must be (almost) the whole crop, as for a CelebA-HQ image.
    (face,) = detector(astronaut)
    size = 256
    crop = alignment.warp_to_crop(
        astronaut, alignment.crop_to_photo_matrix(face.landmarks, size), size
    )
    (again,) = detector(crop)
    matrix = alignment.crop_to_photo_matrix(again.landmarks, size)
    assert np.hypot(*matrix[:, 0]) == pytest.approx(1.0, abs=0.05)  # scale
    assert abs(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0]))) < 3  # rotation
    centre = alignment.apply_affine(matrix, [[size / 2, size / 2]])[0]
    np.testing.assert_allclose(centre, [size / 2, size / 2], atol=0.02 * size)


def test_missing_package_names_the_pip_command(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "mtcnn" else find_spec(name, *a),
    )
    with pytest.raises(detection.FaceDetectorError, match=r"pip install .*mtcnn.*--align none"):
        detection.MTCNNDetector()


def test_jax_backend_is_refused_in_one_line(repo):
    code = (
        "from faceparsing.inference.detection import MTCNNDetector\n"
        "try:\n    MTCNNDetector()\nexcept ValueError as error:\n    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "runs on TensorFlow only" in result.stdout and "'jax'" in result.stdout


def test_detection_json_names_the_landmarks():
    landmarks = np.arange(10, dtype=float).reshape(5, 2)
    record = detection.Detection(box=[0, 1, 2, 3], landmarks=landmarks, score=0.5).to_json()
    assert record["box"] == [0, 1, 2, 3] and record["score"] == 0.5
    assert record["landmarks"]["left_eye"] == [0, 1] and record["landmarks"]["mouth_right"] == [
        8,
        9,
    ]
