import numpy as np
import pytest
from PIL import Image

import visualize
from faceparsing.classes import PALETTE
from faceparsing.inference import overlay, predict


def test_letterbox_keeps_aspect_and_centres():
    image = np.full((50, 100, 3), 7, np.uint8)
    canvas, (top, left, height, width) = predict.letterbox(image, 64)
    assert canvas.shape == (64, 64, 3)
    assert (height, width) == (32, 64) and (top, left) == (16, 0)
    assert (canvas[top : top + height] == 7).all() and (canvas[:top] == 0).all()


def test_error_map_shows_predicted_colour_where_wrong():
    truth = np.array([[1, 2]])
    prediction = np.array([[1, 3]])
    errors = overlay.error_map(truth, prediction)
    assert tuple(errors[0, 0]) == (255, 255, 255)
    assert tuple(errors[0, 1]) == tuple(PALETTE[3])


@pytest.mark.parametrize(
    ("mode", "size"), [("RGB", (70, 40)), ("L", (33, 33)), ("RGBA", (20, 90)), ("P", (48, 64))]
)
def test_photos_of_any_mode_and_size(trained_run, tmp_path, mode, size):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", size, (180, 120, 90)).convert(mode).save(photos / "face.png")
    out = tmp_path / "out"
    code = visualize.main(
        [
            f"--checkpoint={trained_run / 'best.keras'}",
            f"--images={photos}",
            f"--out={out}",
            "--save_masks",
        ]
    )
    assert code == 0
    mask = np.asarray(Image.open(out / "face_mask.png"))
    assert mask.shape == (size[1], size[0]) and mask.max() < 19
    overlay = Image.open(out / "face_overlay.png")
    assert overlay.height == size[1] and overlay.width > 3 * size[0]


def test_folder_with_bad_files_processes_the_good_ones(trained_run, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (40, 40), (200, 150, 120)).save(photos / "good.jpg")
    (photos / "bad.jpg").write_text("not an image")
    out = tmp_path / "out"
    assert (
        visualize.main(
            [f"--checkpoint={trained_run / 'best.keras'}", f"--images={photos}", f"--out={out}"]
        )
        == 1
    )
    assert (out / "good_overlay.png").exists() and not (out / "bad_overlay.png").exists()
    assert "bad.jpg: not a readable image" in capsys.readouterr().err


def test_dataset_panels_and_grid(trained_run, demo_root, tmp_path):
    out = tmp_path / "panels"
    arguments = [
        f"--checkpoint={trained_run / 'best.keras'}",
        f"--data_root={demo_root}",
        "--split=train",
        "--num=2",
        f"--out={out}",
    ]
    assert visualize.main(arguments) == 0
    panels = sorted(out.glob("*_panel.png"))
    assert len(panels) == 2 and (out / "grid.png").exists()
    assert Image.open(panels[0]).width > 4 * 512


def test_no_matching_images_is_an_error(trained_run, tmp_path, capsys):
    assert (
        visualize.main(
            [
                f"--checkpoint={trained_run / 'best.keras'}",
                f"--images={tmp_path}/*.jpg",
                f"--out={tmp_path}",
            ]
        )
        == 2
    )
    assert "matches no file" in capsys.readouterr().err
