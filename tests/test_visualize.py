"""visualize.py on photos and on a dataset split (faces in the wild: test_visualize_faces.py)."""

import json

import numpy as np
import pytest
from PIL import Image

import visualize


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


def test_dataset_panels_show_what_evaluate_counts(trained_run, demo_root, tmp_path):
    # The panel's prediction tile must be evaluate.py's prediction, pixel for pixel: same
    # image loading at the run's input size, logits resized to 512 before the argmax.
    import evaluate
    from faceparsing.classes import PALETTE

    eval_dir, panel_dir = tmp_path / "eval", tmp_path / "panels"
    common = [f"--checkpoint={trained_run / 'best.keras'}", f"--data_root={demo_root}"]
    assert evaluate.main([*common, "--split=val", "--save_predictions", f"--out={eval_dir}"]) == 0
    assert visualize.main([*common, "--split=val", "--num=3", f"--out={panel_dir}"]) == 0
    panels = sorted(panel_dir.glob("*_panel.png"))
    assert panels
    for panel_path in panels:
        image_id = panel_path.name.split("_")[0]
        prediction = np.asarray(Image.open(eval_dir / "predictions" / f"{image_id}.png"))
        tile = np.asarray(Image.open(panel_path).convert("RGB"))[:512, 2 * 512 : 3 * 512]
        np.testing.assert_array_equal(tile, PALETTE[prediction])


def test_bad_checkpoint(bad_checkpoint, tmp_path, assert_one_line_error):
    path, message = bad_checkpoint
    photo = tmp_path / "face.png"
    Image.new("RGB", (20, 20)).save(photo)
    arguments = [f"--checkpoint={path}", f"--images={photo}", f"--out={tmp_path / 'out'}"]
    assert visualize.main(arguments) == 2
    assert_one_line_error(path, message)


@pytest.mark.parametrize("kind", ["text", "bomb"])
def test_unusable_photo(kind, trained_run, tmp_path, monkeypatch, assert_one_line_error):
    photo = tmp_path / "photo.jpg"
    if kind == "text":
        photo.write_text("not an image")
    else:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
        Image.new("RGB", (100, 100)).save(photo)
    arguments = [f"--checkpoint={trained_run / 'best.keras'}", f"--images={photo}",
                 f"--out={tmp_path / 'out'}"]  # fmt: skip
    assert visualize.main(arguments) == 2
    assert_one_line_error(photo, "not a readable image")


@pytest.mark.slow
def test_lapa_run_draws_lapa_legends_and_hair_masks(lapa_run, lapa_root, tmp_path):
    checkpoint = f"--checkpoint={lapa_run / 'best.keras'}"
    panels = tmp_path / "panels"
    arguments = [checkpoint, f"--data_root={lapa_root}", "--split=test", f"--out={panels}"]
    assert visualize.main(arguments) == 0
    assert (panels / "grid.png").is_file()
    photo = tmp_path / "face.png"
    Image.open(next((lapa_root / "test" / "images").iterdir())).save(photo)
    out = tmp_path / "hair"
    arguments = [checkpoint, f"--images={photo}", "--align=none", "--classes=hair",
                 "--save_masks", "--json", f"--out={out}"]  # fmt: skip
    assert visualize.main(arguments) == 0
    assert set(np.unique(np.asarray(Image.open(out / "face_mask.png")))) <= {0, 1}
    assert set(json.loads((out / "face.json").read_text())["pixels"]) <= {"background", "hair"}
