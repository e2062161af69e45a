import cv2
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
    from faceparsing.data import layout, release

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    photo = _save(tmp_path, "photo.png", Image.new("RGB", (40, 40)))
    dataset_image = release.image_path(tmp_path, 7)
    dataset_image.parent.mkdir(parents=True)
    Image.new("RGB", (40, 40)).save(dataset_image)
    for read in (
        lambda: images.read_rgb(photo),
        lambda: layout.open_layout(tmp_path).load_image(7, 32),
    ):
        with pytest.raises(
            errors.ImageReadError, match="40x40 pixels exceeds the 1000-pixel limit"
        ):
            read()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    assert images.read_rgb(photo).shape == (40, 40, 3)
    assert layout.open_layout(tmp_path).load_image(7, 32).shape == (32, 32, 3)


def _quadrant_jpeg(path, side=1024, **kwargs):
    """A JPEG whose top-left quadrant is red, top-right green, bottom-left blue, rest grey."""
    pixels = np.full((side, side, 3), 128, np.uint8)
    half = side // 2
    pixels[:half, :half] = (220, 20, 20)
    pixels[:half, half:] = (20, 220, 20)
    pixels[half:, :half] = (20, 20, 220)
    Image.fromarray(pixels).save(path, quality=95, **kwargs)
    return path


@pytest.mark.parametrize(
    "size, flag",
    [
        (512, cv2.IMREAD_REDUCED_COLOR_2),
        (300, cv2.IMREAD_REDUCED_COLOR_2),
        (256, cv2.IMREAD_REDUCED_COLOR_4),
        (100, cv2.IMREAD_REDUCED_COLOR_8),
        (600, cv2.IMREAD_COLOR),
        (1500, cv2.IMREAD_COLOR),
    ],
)
def test_jpeg_is_decoded_at_the_smallest_scale_above_the_size(tmp_path, monkeypatch, size, flag):
    path = _quadrant_jpeg(tmp_path / "face.jpg")
    flags = []
    decode = images.decode
    monkeypatch.setattr(images, "decode", lambda data, f: flags.append(f) or decode(data, f))
    rgb = images.read_rgb_resized(path, size)
    assert flags == [flag | cv2.IMREAD_IGNORE_ORIENTATION]
    assert rgb.shape == (size, size, 3) and rgb.dtype == np.uint8
    # RGB order, not OpenCV's BGR, and the quadrants where they were.
    quarter = size // 4
    np.testing.assert_allclose(rgb[quarter, quarter], (220, 20, 20), atol=12)
    np.testing.assert_allclose(rgb[quarter, -quarter], (20, 220, 20), atol=12)
    np.testing.assert_allclose(rgb[-quarter, quarter], (20, 20, 220), atol=12)


def test_files_opencv_must_not_decode_go_to_pillow(tmp_path, monkeypatch):
    # Bytes after the end-of-image marker, a CMYK JPEG and a PNG: Pillow decodes them.
    trailing = _quadrant_jpeg(tmp_path / "trailing.jpg", side=64)
    trailing.write_bytes(trailing.read_bytes() + b"\0\0")
    cmyk = tmp_path / "cmyk.jpg"
    Image.open(trailing).convert("CMYK").save(cmyk)
    png = tmp_path / "face.png"
    Image.open(trailing).save(png)
    monkeypatch.setattr(images, "decode", pytest.fail)
    for path in (trailing, cmyk, png):
        rgb = images.read_rgb_resized(path, 32)
        assert rgb.shape == (32, 32, 3)
        np.testing.assert_allclose(rgb[8, 8], (220, 20, 20), atol=25)


def test_truncated_or_broken_jpeg_names_the_file(tmp_path):
    path = _quadrant_jpeg(tmp_path / "cut.jpg")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(errors.ImageReadError, match="cannot read image .*cut.jpg"):
        images.read_rgb_resized(path, 64)
    # A complete-looking file (end marker present) whose data is garbage.
    path.write_bytes(data[:200] + b"\0" * 50 + b"\xff\xd9")
    with pytest.raises(errors.ImageReadError, match="cannot read image .*cut.jpg"):
        images.read_rgb_resized(path, 64)
    with pytest.raises(errors.ImageNotFoundError, match="nothing.jpg: file not found"):
        images.read_rgb_resized(tmp_path / "nothing.jpg", 64)


def test_opencv_runs_one_thread_a_call():
    # The worker threads are the parallelism; OpenCV's own pool would oversubscribe.
    assert cv2.getNumThreads() == 1


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
def test_nearest_resize_keeps_type_and_ids(dtype):
    label = np.zeros((50, 40), dtype)
    label[10:30, 5:25] = 7
    label[20:, 30:] = 18
    for size in [(25, 20), (77, 91), (50, 40)]:
        resized = images.resize_nearest(label, size)
        assert resized.shape == size and resized.dtype == label.dtype
        assert set(np.unique(resized)) <= {0, 7, 18}
    np.testing.assert_array_equal(images.resize_nearest(label, (100, 80))[::2, ::2], label)


def test_warp_affine_samples_where_the_matrix_points():
    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    label = np.arange(6 * 8, dtype=np.uint8).reshape(6, 8)
    identity = [[1, 0, 0], [0, 1, 0]]
    np.testing.assert_array_equal(images.warp_affine(image, identity, (6, 8)), image)
    # Output (x, y) reads input (x + 2, y - 1): shifted, with zeros where nothing is read.
    moved = images.warp_affine(label, [[1, 0, 2], [0, 1, -1]], (6, 8), nearest=True)
    np.testing.assert_array_equal(moved[1:, :6], label[:5, 2:])
    assert (moved[0] == 0).all() and (moved[:, 6:] == 0).all()
    # Half-pixel positions: bilinear averages, nearest picks one of the two values.
    half = [[1, 0, 0.5], [0, 1, 0]]
    averaged = images.warp_affine(image, half, (6, 8)).astype(int)
    np.testing.assert_allclose(
        averaged[:, :7], (image[:, :7] + image[:, 1:].astype(int)) / 2, atol=1
    )
    picked = images.warp_affine(label, half, (6, 8), nearest=True)[:, :7]
    assert ((picked == label[:, :7]) | (picked == label[:, 1:])).all()
