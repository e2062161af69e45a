import numpy as np
import pytest
from PIL import Image

from faceparsing import errors, images


def _save(tmp_path, name, image, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16", "RGB"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    image = Image.new("RGB", (7, 5), (10, 200, 30)).convert(mode)
    path = _save(tmp_path, "a.png" if mode != "CMYK" else "a.jpg", image)
    array = images.read_rgb(path)
    assert array.shape == (5, 7, 3) and array.dtype == np.uint8


def test_transparent_pixels_are_composited_on_white(tmp_path):
    image = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    array = images.read_rgb(_save(tmp_path, "t.png", image))
    assert (array == 255).all()


def test_exif_orientation_is_respected(tmp_path):
    image = Image.new("RGB", (8, 4), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = _save(tmp_path, "rotated.jpg", image, exif=exif)
    assert images.read_rgb(path).shape == (8, 4, 3)


def test_non_image_and_truncated_files_name_the_file(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    with pytest.raises(errors.ImageReadError, match="notes.jpg: not a readable image"):
        images.read_rgb(text)
    good = _save(tmp_path, "cut.jpg", Image.new("RGB", (64, 64), (1, 2, 3)))
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(errors.ImageReadError, match="cut.jpg"):
        images.read_rgb(good)
    with pytest.raises(errors.ImageReadError, match="missing.png: file not found"):
        images.read_rgb(tmp_path / "missing.png")


def test_decompression_bomb_is_refused(tmp_path):
    path = _save(tmp_path, "bomb.png", Image.new("L", (200, 200)))
    with pytest.raises(errors.ImageReadError, match="bomb.png: 200x200 pixels exceeds"):
        images.read_rgb(path, max_pixels=1000)


def test_list_images_accepts_file_folder_and_glob(tmp_path):
    for name in ("b.png", "a.jpg", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in images.list_images(tmp_path)] == ["a.jpg", "b.png"]
    assert [p.name for p in images.list_images(tmp_path / "b.png")] == ["b.png"]
    assert [p.name for p in images.list_images(str(tmp_path / "*.txt"))] == ["c.txt"]
    assert images.list_images(str(tmp_path / "nothing*")) == []


def test_photos_and_dataset_files_share_one_pixel_limit(tmp_path, monkeypatch):
    # One limit, Pillow's MAX_IMAGE_PIXELS, for every image the project reads.
    from faceparsing.data import layout, samples

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    photo = _save(tmp_path, "photo.png", Image.new("RGB", (40, 40)))
    dataset_image = layout.image_path(tmp_path, 7)
    dataset_image.parent.mkdir(parents=True)
    Image.new("RGB", (40, 40)).save(dataset_image)
    for read in (lambda: images.read_rgb(photo), lambda: samples.load_image(tmp_path, 7, 32)):
        with pytest.raises(
            errors.ImageReadError, match="40x40 pixels exceeds the 1000-pixel limit"
        ):
            read()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    assert images.read_rgb(photo).shape == (40, 40, 3)
    assert samples.load_image(tmp_path, 7, 32).shape == (32, 32, 3)
