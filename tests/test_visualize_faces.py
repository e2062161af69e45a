"""visualize.py on photos and videos of faces in the wild (detector, alignment, JSON)."""

import json

import numpy as np
import pytest
from PIL import Image

import visualize
from faceparsing.classes import CLASS_NAMES
from faceparsing.inference import video
from faceparsing.inference.predict import parse_photo

data = pytest.importorskip("skimage.data")


def run(trained_run, *arguments):
    return visualize.main([f"--checkpoint={trained_run / 'best.keras'}", *map(str, arguments)])


@pytest.fixture(scope="module")
def two_astronauts(tmp_path_factory):
    """A 256x512 photo with the astronaut twice (the second mirrored)."""
    half = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256), Image.BILINEAR))
    path = tmp_path_factory.mktemp("photos") / "pair.png"
    Image.fromarray(np.concatenate([half, half[:, ::-1]], axis=1)).save(path)
    return path


def test_two_faces_json_masks_and_overlay(trained_run, two_astronauts, tmp_path):
    out = tmp_path / "out"
    assert (
        run(trained_run, f"--images={two_astronauts}", f"--out={out}", "--save_masks", "--json")
        == 0
    )
    record = json.loads((out / "pair.json").read_text())
    assert record["align"] == "celebahq" and (record["width"], record["height"]) == (512, 256)
    assert len(record["faces"]) == 2
    first, second = record["faces"]
    assert first["box"][2] < 256 < second["box"][0]
    assert set(first["landmarks"]) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
    assert 0 < first["score"] <= 1 and sum(first["pixels"].values()) > 0
    mask = np.asarray(Image.open(out / "pair_mask.png"))
    assert mask.shape == (256, 512) and mask.max() < 19
    assert sum(record["pixels"].values()) == mask.size
    counts = np.bincount(mask.ravel(), minlength=19)
    assert record["pixels"] == {
        name: int(n) for name, n in zip(CLASS_NAMES, counts, strict=True) if n
    }
    panel = Image.open(out / "pair_overlay.png")
    assert panel.height == 256 and panel.width > 3 * 512


def test_no_face_says_so_and_parses_the_whole_photo(trained_run, tmp_path, capsys):
    photo = tmp_path / "wall.png"
    Image.new("RGB", (60, 40), (120, 160, 90)).save(photo)
    out = tmp_path / "out"
    assert run(trained_run, f"--images={photo}", f"--out={out}", "--save_masks", "--json") == 0
    err_lines = [line for line in capsys.readouterr().err.splitlines() if "no face" in line]
    assert err_lines == [f"{photo}: no face found, parsed the whole photo instead"]
    assert json.loads((out / "wall.json").read_text())["faces"] == []
    assert np.asarray(Image.open(out / "wall_mask.png")).shape == (40, 60)


def test_align_none_is_the_whole_photo_letterbox_and_needs_no_detector(
    trained_run, two_astronauts, tmp_path, monkeypatch
):
    from faceparsing.checkpoints import load_checkpoint
    from faceparsing.inference import detection

    monkeypatch.setattr(detection, "import_mtcnn", lambda: pytest.fail("detector built"))
    out = tmp_path / "out"
    assert (
        run(
            trained_run,
            f"--images={two_astronauts}",
            f"--out={out}",
            "--align=none",
            "--save_masks",
        )
        == 0
    )
    mask = np.asarray(Image.open(out / "pair_mask.png"))
    model = load_checkpoint(trained_run / "best.keras")
    expected = parse_photo(model, np.asarray(Image.open(two_astronauts).convert("RGB")), 32)
    np.testing.assert_array_equal(mask, expected)


def test_missing_detector_package_is_one_line_before_loading(
    trained_run, tmp_path, monkeypatch, capsys
):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "mtcnn" else find_spec(name, *a),
    )
    photo = tmp_path / "p.png"
    Image.new("RGB", (20, 20)).save(photo)
    assert run(trained_run, f"--images={photo}", f"--out={tmp_path / 'out'}") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: face alignment needs the mtcnn package: pip install")
    assert "\n" not in err


def astronaut_clip(path, frames=3):
    small = np.asarray(Image.fromarray(data.astronaut()).resize((160, 160), Image.BILINEAR))
    with video.video_writer(path, fps=5) as write:
        for shift in range(frames):
            write(np.roll(small, 4 * shift, axis=1))


def test_video_among_images_gives_overlay_video_masks_and_json(trained_run, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    astronaut_clip(clips / "walk.mp4")
    out = tmp_path / "out"
    assert run(trained_run, f"--images={clips}", f"--out={out}", "--save_masks", "--json") == 0
    masks = sorted((out / "walk_masks").glob("*.png"))
    assert len(masks) == 3 and np.asarray(Image.open(masks[0])).shape == (160, 160)
    record = json.loads((out / "walk.json").read_text())
    assert record["frames"] == 3 and [len(r["faces"]) for r in record["records"]] == [1, 1, 1]
    boxes = [r["faces"][0]["box"][0] for r in record["records"]]
    assert boxes[0] < boxes[2]  # the face moves right with the frames
    frames, _, count = video.read_frames(out / "walk_overlay.mp4")
    assert count == 3 and next(frames).shape == (160, 160, 3)


def test_video_option_with_align_none(trained_run, tmp_path):
    astronaut_clip(tmp_path / "clip.mp4", frames=2)
    out = tmp_path / "out"
    assert (
        run(
            trained_run,
            f"--video={tmp_path / 'clip.mp4'}",
            f"--out={out}",
            "--align=none",
            "--save_masks",
        )
        == 0
    )
    assert (
        len(list((out / "clip_masks").glob("*.png"))) == 2 and (out / "clip_overlay.mp4").is_file()
    )


def test_unreadable_video_is_one_line(trained_run, tmp_path, capsys):
    (tmp_path / "broken.mp4").write_text("nope")
    assert (
        run(trained_run, f"--video={tmp_path / 'broken.mp4'}", f"--out={tmp_path}", "--align=none")
        == 2
    )
    assert "cannot read video" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["--crop_scale=0"], "--crop_scale must be positive"), (["--align=dlib"], "invalid choice")],
)
def test_bad_options(trained_run, tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        run(trained_run, f"--images={tmp_path}", f"--out={tmp_path}", *arguments)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_landmarks_file_replaces_the_detector(trained_run, two_astronauts, tmp_path, monkeypatch):
    from faceparsing.inference import detection

    monkeypatch.setattr(detection, "import_mtcnn", lambda: pytest.fail("detector built"))
    left = [[100, 100], [130, 101], [115, 118], [103, 134], [128, 135]]
    right = [[x + 250, y] for x, y in left]
    table = tmp_path / "faces.json"
    table.write_text(json.dumps({"pair.png": [left, right]}))
    out = tmp_path / "out"
    arguments = [f"--images={two_astronauts}", f"--out={out}", f"--landmarks={table}", "--json"]
    assert run(trained_run, *arguments) == 0
    record = json.loads((out / "pair.json").read_text())
    assert [face["landmarks"]["left_eye"] for face in record["faces"]] == [[100, 100], [350, 100]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold an object"),
        ('{"a.png": [[[1, 2]]]}', "key 'a.png': landmarks must be 5 finite"),
    ],
)
def test_bad_landmarks_file_is_one_line(trained_run, tmp_path, capsys, content, message):
    table = tmp_path / "faces.json"
    table.write_text(content)
    photo = tmp_path / "p.png"
    Image.new("RGB", (20, 20)).save(photo)
    assert run(trained_run, f"--images={photo}", f"--out={tmp_path}", f"--landmarks={table}") == 2
    assert message in capsys.readouterr().err
