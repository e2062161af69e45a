import json
import shutil

import numpy as np
import pytest

from faceparsing.data import packed, packing
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.data.layout import check_dataset, open_layout, split_ids
from faceparsing.data.release import image_path, merge_masks
from faceparsing.errors import ConfigError, DatasetError

PACK = dict(image_size=512, samples_per_shard=4, workers=1, progress=False)


@pytest.fixture(scope="module")
def pack_root(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("packed") / "pack"
    packing.pack(release, out, **PACK)
    return out


def _dataset(root, **options):
    settings = dict(batch_size=4, image_size=32, augment=False, shuffle=False)
    return CelebAMaskHQ(root, "all", **{**settings, **options})


def test_a_pack_holds_every_split_and_its_labels_are_the_release_labels(release, pack_root):
    for split in ("train", "val", "test", "all"):
        assert split_ids(pack_root, split) == split_ids(release, split)
    for image_id in split_ids(release, "all"):  # what evaluate.py scores against
        assert np.array_equal(
            open_layout(pack_root).load_label(image_id), merge_masks(release, image_id)
        )
    manifest = packed.read_manifest(pack_root)
    assert manifest["format_version"] == packed.FORMAT_VERSION
    assert manifest["jpeg_quality"] == packed.JPEG_QUALITY
    assert check_dataset(pack_root) == []


@pytest.mark.parametrize("target", ["integer", "onehot"])
def test_packed_batches_keep_the_release_contract(release, pack_root, target):
    options = dict(target=target, class_weights="inverse_frequency")
    x_release, y_release, w_release = _dataset(release, **options)[0]
    x_packed, y_packed, w_packed = _dataset(pack_root, **options)[0]
    assert x_packed.dtype == np.uint8 and x_packed.shape == x_release.shape
    assert np.array_equal(y_packed, y_release)
    assert np.array_equal(w_packed, w_release)  # class weights from the same labels
    # The stored JPEG (quality 95) differs from the release's decode by a grey level or two.
    assert np.abs(x_packed.astype(int) - x_release).mean() < 3


def test_packed_augmentation_is_the_release_augmentation_on_the_packed_image(pack_root):
    augmented = _dataset(pack_root, augment=True, seed=3)
    again = _dataset(pack_root, augment=True, seed=3)
    plain = _dataset(pack_root)
    x, y = augmented.batch(0, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip((x, y), again.batch(0, epoch=1), strict=True))
    assert not np.array_equal(x, plain.batch(0, epoch=1)[0])


def test_a_killed_pack_reruns_to_completion_and_keeps_finished_shards(
    release, tmp_path, monkeypatch
):
    out = tmp_path / "pack"
    write_shard = packing._write_shard
    written = []

    def killed_after_one_shard(path, records, bar):
        if written:
            raise KeyboardInterrupt("killed")
        write_shard(path, records, bar)
        written.append(path)

    monkeypatch.setattr(packing, "_write_shard", killed_after_one_shard)
    with pytest.raises(KeyboardInterrupt):
        packing.pack(release, out, **PACK)
    assert not packed.is_packed(out)  # no manifest: nothing reads a partial pack
    with pytest.raises(DatasetError):
        split_ids(out, "train")
    finished = written[0].stat().st_mtime_ns
    stale = out / ".train-00001-of-00002.x1y2.tmp.array_record"  # what a SIGKILL leaves
    stale.write_bytes(b"half a shard")

    monkeypatch.setattr(packing, "_write_shard", write_shard)
    manifest = packing.pack(release, out, **PACK)
    assert written[0].stat().st_mtime_ns == finished  # kept, not rewritten
    assert not stale.exists()
    assert packed.open_pack(out).problems(packed.open_pack(out).split_ids("all"), full=True) == []
    assert sum(split["count"] for split in manifest["splits"].values()) == 10


def test_a_pack_with_other_settings_or_a_foreign_folder_is_refused(release, pack_root, tmp_path):
    with pytest.raises(ConfigError, match="other settings"):
        packing.pack(release, pack_root, **{**PACK, "image_size": 64})
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        packing.pack(release, tmp_path, **PACK)
    with pytest.raises(ConfigError, match="already a packed folder"):
        packing.pack(pack_root, tmp_path / "again", **PACK)


def test_a_bad_release_image_stops_the_pack_with_its_name(release, tmp_path):
    broken = tmp_path / "release"
    shutil.copytree(release, broken)
    image_path(broken, 3).write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"3\.jpg") as error:
        packing.pack(broken, tmp_path / "pack", **PACK)
    assert "\n" not in str(error.value)


def _damaged_copy(pack_root, tmp_path, damage):
    copy = tmp_path / "pack"
    shutil.copytree(pack_root, copy)
    shard = copy / packed.read_manifest(copy)["splits"]["train"]["shards"][0]["file"]
    damage(shard)
    return copy, shard


def _truncate(path):
    path.write_bytes(path.read_bytes()[:1000])


def _flip_middle(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 4 : len(data) // 4 + 64] = bytes(64)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [lambda path: path.unlink(), _truncate], ids=["gone", "short"])
def test_a_missing_or_short_shard_is_a_one_line_error_naming_it(pack_root, tmp_path, damage):
    copy, shard = _damaged_copy(pack_root, tmp_path, damage)
    with pytest.raises(DatasetError, match=shard.name) as error:
        _dataset(copy)
    assert "\n" not in str(error.value)
    assert any(shard.name in problem for problem in check_dataset(copy))


def test_a_corrupt_shard_is_caught_by_its_checksum_and_on_reading(pack_root, tmp_path):
    copy, shard = _damaged_copy(pack_root, tmp_path, _flip_middle)
    assert check_dataset(copy) == [f"packed shard {shard}: checksum mismatch"]
    dataset = _dataset(copy)
    with pytest.raises(DatasetError, match=shard.name):
        for image_id in dataset.ids:
            dataset.maker.sample(image_id, 0)


def test_an_unknown_format_version_is_refused(pack_root, tmp_path):
    copy = tmp_path / "pack"
    shutil.copytree(pack_root, copy)
    manifest = json.loads((copy / packed.MANIFEST).read_text())
    manifest["format_version"] = 99
    (copy / packed.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="format version 99"):
        split_ids(copy, "all")


@pytest.mark.slow
def test_evaluate_scores_a_pack_against_the_release_labels(release, pack_root, trained_run):
    import evaluate

    reports = {}
    for name, root in (("release", release), ("packed", pack_root)):
        out = trained_run / f"eval_{name}"
        assert evaluate.main([f"--checkpoint={trained_run / 'best.keras'}",
                              f"--data_root={root}", "--split=all", f"--out={out}"]) == 0  # fmt: skip
        reports[name] = np.array(json.loads((out / "report.json").read_text())["confusion_matrix"])
    truth_release, truth_packed = (reports[name].sum(axis=1) for name in ("release", "packed"))
    assert np.array_equal(truth_release, truth_packed)  # the same labels, pixel for pixel


@pytest.mark.slow
def test_train_runs_on_a_pack_with_worker_processes(pack_root, tiny_train_args, tmp_path, capsys):
    import train

    run_dir = tmp_path / "run"
    assert (
        train.main(tiny_train_args(pack_root, run_dir, "--workers=2", "--worker_type=processes"))
        == 0
    )
    assert "Building batches with 2 processes (worker_type processes)" in capsys.readouterr().out
    assert (run_dir / "best.keras").exists()
    assert not (pack_root / ".label_cache").exists()  # a pack holds merged labels


def test_a_lapa_layout_packs_with_its_class_set_and_sample_names(tmp_path):
    from faceparsing.classes import LAPA
    from faceparsing.data.synthetic import make_demo_dataset

    source = tmp_path / "lapa"
    make_demo_dataset(source, 6, seed=0, layout="lapa")
    out = tmp_path / "pack"
    packing.pack(source, out, **{**PACK, "image_size": 64})
    folder, pack_layout = open_layout(source), open_layout(out)
    assert pack_layout.kind == "packed" and pack_layout.class_set == LAPA
    for split in ("train", "val", "test"):
        assert pack_layout.split_ids(split) == folder.split_ids(split)
    ids = folder.split_ids("all")
    assert [pack_layout.sample_name(i) for i in ids] == [folder.sample_name(i) for i in ids]
    x_folder, y_folder = CelebAMaskHQ(source, "all", batch_size=6, image_size=64, shuffle=False)[0]
    x_packed, y_packed = CelebAMaskHQ(out, "all", batch_size=6, image_size=64, shuffle=False)[0]
    assert np.array_equal(y_packed, y_folder)
    # At 64x64 JPEG's 2x2 chroma subsampling costs a few grey levels more than at 512.
    assert np.abs(x_packed.astype(int) - x_folder).mean() < 6
    from faceparsing.data.layout import check_release_labels

    with pytest.raises(DatasetError, match="score on the folder itself"):
        check_release_labels(pack_layout)


def _label_maps():
    rng = np.random.default_rng(0)
    face = np.zeros((64, 64), np.uint8)
    face[10:50, 12:52] = 1
    face[20:25, 20:30] = 4  # an eye inside the skin
    return {
        "background only (runs over 65,535 pixels)": np.zeros((512, 512), np.uint8),
        "one id everywhere": np.full((300, 300), 18, np.uint8),
        "noise (a run a pixel)": rng.integers(0, 19, (64, 64), dtype=np.uint8),
        "a face": face,
        "every byte value": np.arange(256, dtype=np.uint8).repeat(256).reshape(256, 256),
    }


@pytest.mark.parametrize("name", list(_label_maps()))
def test_labels_are_stored_losslessly_as_runs(name):
    label = _label_maps()[name]
    data = packed.encode_label(label)
    assert np.array_equal(packed.decode_label(data, label.shape[0]), label)


def test_damaged_label_bytes_decode_to_none_not_to_a_wrong_map():
    label = _label_maps()["a face"]
    data = bytearray(packed.encode_label(label))
    assert packed.decode_label(bytes(data), 32) is None  # runs that do not fill the size
    data[len(data) // 2] ^= 0xFF
    assert packed.decode_label(bytes(data), 64) is None  # zlib's checksum
    assert packed.decode_label(b"", 64) is None


def test_a_format_version_1_record_still_reads(pack_root, release):
    import struct
    import zlib

    image_id = split_ids(release, "all")[0]
    _, jpeg, (decoder, data) = packed.PackedLayout(pack_root)._record(image_id)
    raw_ids = decoder(data, 512).tobytes()
    old = struct.pack("<4sII", b"FPK1", image_id, len(jpeg)) + bytes(jpeg) + zlib.compress(raw_ids)
    stored_id, _, (old_decoder, old_data) = packed.decode_record(old, "test")
    assert stored_id == image_id
    assert np.array_equal(old_decoder(old_data, 512), merge_masks(release, image_id))


def test_training_batches_decode_fast_and_close_to_the_exact_decode(pack_root, monkeypatch):
    pytest.importorskip("simplejpeg")
    pack = packed.PackedLayout(pack_root)
    image_id = pack.split_ids("all")[0]
    exact, label = pack.load_sample(image_id, 512)
    fast, fast_label = pack.load_sample(image_id, 512, fast=True)
    assert np.array_equal(fast_label, label)
    difference = np.abs(fast.astype(int) - exact)
    assert 0 < difference.mean() < 2  # another decoder, close to the exact one
    # Without simplejpeg, OpenCV decodes exactly whatever is asked.
    monkeypatch.setattr(packed, "_simplejpeg", lambda: None)
    assert np.array_equal(pack.load_sample(image_id, 512, fast=True)[0], exact)


def test_augmented_packed_batches_use_the_fast_decode_and_evaluation_the_exact_one(
    pack_root, monkeypatch
):
    calls = []
    real = packed._decode_rgb
    monkeypatch.setattr(
        packed, "_decode_rgb", lambda jpeg, fast=False: calls.append(fast) or real(jpeg, fast)
    )
    _dataset(pack_root, augment=True)[0]
    _dataset(pack_root, augment=False)[0]
    assert calls == [True] * 4 + [False] * 4


def _copy_release(release, tmp_path):
    root = tmp_path / "release"
    shutil.copytree(release, root)
    return root


def test_pack_cache_is_rewritten_when_the_source_changes(release, tmp_path):
    root = _copy_release(release, tmp_path)
    folder = tmp_path / "cache"
    packing.pack_cache(root, folder, 32, progress=False)
    first = packed.read_manifest(folder)["source_stamp"]
    image = image_path(root, split_ids(root, "all")[0])
    image.write_bytes(image.read_bytes())  # same bytes, a new modification time
    import os

    os.utime(image, ns=(1, 1))
    packing.pack_cache(root, folder, 32, progress=False)
    assert packed.read_manifest(folder)["source_stamp"] != first
    packing.pack_cache(root, folder, 64, progress=False)  # another size: written anew
    assert packed.read_manifest(folder)["image_size"] == 64


def test_pack_cache_refuses_a_folder_holding_something_else(release, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty and holds no pack"):
        packing.pack_cache(release, tmp_path / "mine", 32, progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def test_pack_cache_is_refused_with_several_processes(release):
    from faceparsing import config as config_module
    from faceparsing.training import multihost, trainer

    config = config_module.resolve(None, [f"--data_root={release}", "--pack_cache=auto"])
    cluster = multihost.Cluster(num_processes=2, process_id=0)
    with pytest.raises(ConfigError, match="pack_cache writes its pack from one process"):
        trainer.process_datasets(config, cluster)
