import cv2
import numpy as np
import pytest
from PIL import Image
from tiny_celebamask import box, save_mask, write_sample

from faceparsing import errors
from faceparsing.classes import CLASS_IDS, PART_NAMES
from faceparsing.data import layout, packed, release
from faceparsing.images import resize_nearest

SIZE = release.MASK_SIZE


def test_merge_follows_official_order_not_alphabetical(tmp_path):
    parts = {
        "skin": box(0, 0, 300, 300),
        "l_eye": box(50, 50, 80, 90),
        "nose": box(100, 100, 150, 130),
    }
    parts["hair"] = box(0, 0, 40, 300)  # hair (13) paints over skin (1)
    write_sample(tmp_path, 7, parts, image=False)
    label = release.merge_masks(tmp_path, 7)
    assert label.shape == (SIZE, SIZE) and label.dtype == np.uint8
    assert label[60, 60] == CLASS_IDS["l_eye"]
    assert label[120, 110] == CLASS_IDS["nose"]
    assert label[10, 10] == CLASS_IDS["hair"]
    assert label[200, 200] == CLASS_IDS["skin"]
    assert label[400, 400] == 0
    # Alphabetical order would paint skin last, over eye and nose.
    alphabetical = np.zeros((SIZE, SIZE), np.uint8)
    for part in sorted(parts):
        alphabetical[parts[part]] = PART_NAMES.index(part) + 1
    assert not np.array_equal(label, alphabetical)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1"])
def test_merge_reads_every_mask_mode(tmp_path, mode):
    write_sample(
        tmp_path, 3, {"skin": box(10, 10, 50, 50), "nose": box(20, 20, 30, 30)}, mode, False
    )
    label = release.merge_masks(tmp_path, 3)
    expected = np.zeros((SIZE, SIZE), np.uint8)
    expected[10:50, 10:50] = 1
    expected[20:30, 20:30] = 2
    np.testing.assert_array_equal(label, expected)


def test_merge_uses_blue_channel_like_cv2(tmp_path):
    path = release.part_path(tmp_path, 0, "skin")
    path.parent.mkdir(parents=True)
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    rgb[:10, :, 0] = 255  # red only: cv2 channel 0 (blue) is zero here
    rgb[20:30, :, 2] = 255  # blue only: foreground for g_mask.py
    Image.fromarray(rgb).save(path)
    label = release.merge_masks(tmp_path, 0)
    assert label[:10].max() == 0 and label[20:30].min() == 1


def test_absent_parts_are_background_and_mask_folder_follows_id(tmp_path):
    write_sample(tmp_path, 4321, {"neck": box(0, 0, 10, 10)}, image=False)
    assert (tmp_path / release.MASK_DIR / "2" / "04321_neck.png").is_file()
    label = release.merge_masks(tmp_path, 4321)
    assert set(np.unique(label)) == {0, CLASS_IDS["neck"]}


def test_no_parts_names_folder(tmp_path):
    (tmp_path / release.MASK_DIR / "0").mkdir(parents=True)
    with pytest.raises(ValueError, match="CelebAMask-HQ-mask-anno") as info:
        release.merge_masks(tmp_path, 5)
    assert str(tmp_path / release.MASK_DIR / "0") in str(info.value)


def test_misspelt_mask_folder_is_named(tmp_path):
    (tmp_path / release.MISSPELT_MASK_DIR / "0").mkdir(parents=True)
    with pytest.raises(errors.DatasetError, match="CelebAMaskHQ-mask-anno.*rename"):
        release.merge_masks(tmp_path, 0)


def test_a_decompression_bomb_is_a_dataset_error_naming_the_file(tiny_root, monkeypatch):
    # Pillow refuses files over twice MAX_IMAGE_PIXELS: at a 1 Mpx limit, 1500x1500 is a bomb.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1024 * 1024)
    image_id = layout.split_ids(tiny_root, "train")[0]
    path = release.image_path(tiny_root, image_id)
    Image.new("RGB", (1500, 1500)).save(path, quality=50)
    with pytest.raises(errors.DatasetError, match=f"{image_id}.jpg"):
        layout.open_layout(tiny_root).load_image(image_id, 32)
    problems = layout.open_layout(tiny_root).problems([image_id], full=True)
    assert any(str(path) in problem for problem in problems)


def test_wrong_mask_size_and_corrupt_mask_name_the_file(tmp_path):
    path = release.part_path(tmp_path, 0, "skin")
    path.parent.mkdir(parents=True)
    Image.new("RGB", (256, 256)).save(path)
    with pytest.raises(errors.DatasetError, match=r"00000_skin\.png is 256x256"):
        release.merge_masks(tmp_path, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(errors.DatasetError, match=r"cannot read mask .*00000_skin\.png"):
        release.merge_masks(tmp_path, 0)


@pytest.mark.parametrize("size", [37, 128, 255])
def test_nearest_resize_invents_no_ids(size):
    label = np.zeros((SIZE, SIZE), np.uint8)
    label[:, 100:300] = 1
    label[150:250, 150:200] = 18
    label[200:, 290:] = 5
    resized = resize_nearest(label, (size, size))
    assert resized.shape == (size, size)
    assert set(np.unique(resized)) <= {0, 1, 5, 18}


def test_cache_round_trip_and_invalidation(tiny_root, tmp_path):
    cache = release.LabelCache(tiny_root, tmp_path / "cache")
    first = cache.load(1)
    assert cache.entry_path(1).is_file()
    np.testing.assert_array_equal(cache.load(1), first)
    np.testing.assert_array_equal(first, release.merge_masks(tiny_root, 1))
    # A changed part file invalidates the entry.
    save_mask(release.part_path(tiny_root, 1, "nose"), box(0, 0, 30, 30))
    assert cache.load(1)[5, 5] == CLASS_IDS["nose"]


def test_corrupt_cache_entry_is_not_served(tiny_root, tmp_path):
    cache = release.LabelCache(tiny_root, tmp_path / "cache")
    expected = cache.load(2)
    cache.entry_path(2).write_bytes(b"not an entry")
    np.testing.assert_array_equal(cache.load(2), expected)
    # A readable entry of a wrong label under a stale fingerprint is not served either.
    stale = b"0" * 40 + packed.encode_label(np.full((SIZE, SIZE), 7, np.uint8))
    cache.entry_path(2).write_bytes(stale)
    np.testing.assert_array_equal(cache.load(2), expected)


def test_mask_reads_as_cv2_imread_channel_0(tmp_path):
    path = release.part_path(tmp_path, 0, "skin")
    path.parent.mkdir(parents=True)
    rgb = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    np.testing.assert_array_equal(release.read_mask(path), cv2.imread(str(path))[:, :, 0])


def test_truncated_mask_names_the_file(tmp_path):
    path = release.part_path(tmp_path, 0, "skin")
    save_mask(path, box(0, 0, 300, 300))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # header intact, image data cut
    with pytest.raises(errors.ImageReadError, match=r"cannot read mask .*00000_skin\.png"):
        release.read_mask(path)


def test_cached_label_is_served_without_merging(tiny_root, tmp_path, monkeypatch):
    cache = release.LabelCache(tiny_root, tmp_path / "cache")
    expected = cache.load(3)
    monkeypatch.setattr(release, "merge_masks", pytest.fail)
    label = cache.load(3)
    np.testing.assert_array_equal(label, expected)
    assert label.dtype == np.uint8 and label.flags.c_contiguous


def _entry_with_fingerprint(cache, image_id, array):
    """Overwrite an entry with `array`, keeping the fingerprint the entry had."""
    fingerprint = cache.entry_path(image_id).read_bytes()[:40]
    cache.entry_path(image_id).write_bytes(fingerprint + packed.encode_label(array))


@pytest.mark.parametrize(
    "bad_entry",
    [
        np.full((256, 256), 1, np.uint8),  # wrong size
        np.full((SIZE, SIZE), 19, np.uint8),  # an id that does not exist
    ],
)
def test_wrong_cache_entry_is_merged_again(tiny_root, tmp_path, bad_entry):
    cache = release.LabelCache(tiny_root, tmp_path / "cache")
    expected = cache.load(1)
    _entry_with_fingerprint(cache, 1, bad_entry)
    np.testing.assert_array_equal(cache.load(1), expected)
    np.testing.assert_array_equal(cache.load(1), expected)  # and the entry was rewritten
    data = cache.entry_path(1).read_bytes()
    np.testing.assert_array_equal(packed.decode_label(data[40:], SIZE), expected)


def test_truncated_cache_entry_is_merged_again(tiny_root, tmp_path, caplog):
    cache = release.LabelCache(tiny_root, tmp_path / "cache")
    expected = cache.load(0)
    path = cache.entry_path(0)
    path.write_bytes(path.read_bytes()[:-40])  # fingerprint intact, label data cut
    np.testing.assert_array_equal(cache.load(0), expected)
    assert "corrupt label cache entry" in caplog.text
