"""Packing a dataset into ArrayRecord shards: `python data_generator.py pack`.

The format and the reader are `faceparsing.data.packed`; this module writes
it, from any layout the dataset reads (CelebAMask-HQ's release, LaPa's, a
labelled folder), in parallel worker processes, resumably and atomically: a
shard file exists only once complete, and the manifest is written last.
"""

import datetime
import hashlib
import json
import os
import shutil
from pathlib import Path

from faceparsing.data.layout import open_layout
from faceparsing.data.loader import Pool, usable_cpus
from faceparsing.data.packed import (
    FORMAT,
    FORMAT_VERSION,
    JPEG_QUALITY,
    MANIFEST,
    PACKED_SPLITS,
    PLAN,
    SAMPLES_PER_SHARD,
    PackedLayout,
    array_record,
    encode_record,
    file_sha256,
)
from faceparsing.errors import ConfigError
from faceparsing.files import atomic_path, atomic_write_text, remove_stale_temp_files


class SampleEncoder:
    """`image_id -> record` from the source layout: what a packing worker process runs."""

    def __init__(self, layout, image_size, quality):
        self.layout, self.image_size, self.quality = layout, image_size, quality

    def __call__(self, image_id):
        image, label = self.layout.load_sample(image_id, self.image_size)
        return encode_record(image_id, image, label, self.quality)


def shard_name(split, index, count):
    return f"{split}-{index:05d}-of-{count:05d}.array_record"


def pack_plan(layout, image_size, splits, quality, samples_per_shard):
    """The pack's settings and the ids of every shard (deterministic: a rerun resumes it)."""
    if layout.kind == PackedLayout.kind:
        raise ConfigError(f"--data_root {layout.root} is already a packed folder; give the release")
    all_ids = layout.split_ids("all")
    plan = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "source": str(Path(layout.root).resolve()), "layout": layout.kind,
        "class_set": layout.class_set.to_config(),
        # Sample names (LaPa's file stems) for reports and panels; CelebAMask-HQ's are the ids.
        "names": {str(i): layout.sample_name(i) for i in all_ids if layout.sample_name(i) != str(i)},
        "image_size": image_size, "jpeg_quality": quality, "splits": {},
    }  # fmt: skip
    for split in splits:
        ids = layout.split_ids(split)
        chunks = [ids[i : i + samples_per_shard] for i in range(0, len(ids), samples_per_shard)]
        plan["splits"][split] = [
            {"file": shard_name(split, k, len(chunks)), "ids": chunk}
            for k, chunk in enumerate(chunks)
        ]
    return plan


def pack(
    root, out, image_size=512, splits=PACKED_SPLITS, workers=None,
    quality=JPEG_QUALITY, samples_per_shard=SAMPLES_PER_SHARD, progress=True,
    dataset="auto", classes="", stamp=None,
):  # fmt: skip
    """Pack the dataset at `root` into the folder `out` (resumable; manifest written last).

    Any layout the dataset reads is packed (CelebAMask-HQ's release, LaPa's, a
    labelled folder); the manifest keeps its class set, so the pack trains and
    evaluates with the same classes.

    Args:
        root: str or Path. The dataset root.
        out: str or Path. The packed folder (created).
        image_size: int. Side of the stored images and labels. Defaults to 512.
        splits: sequence of "train", "val", "test". Defaults to all three.
        workers: int or None. Encoding processes. Defaults to the usable cores.
        quality: int. JPEG quality. Defaults to `JPEG_QUALITY`.
        samples_per_shard: int. Records per shard file. Defaults to `SAMPLES_PER_SHARD`.
        progress: bool. Show a tqdm bar.
        dataset: str. Layout of `root` ("auto" detects it; see `layout.DATASETS`).
        classes: str. The source's class set when not its layout's own.
        stamp: str or None. Kept in the plan and manifest (`pack_cache` stores the
            source's `source_stamp` there, to notice a changed source).

    Returns:
        The manifest (dict).
    """
    _check_pack_arguments(image_size, splits, quality, samples_per_shard)
    out = Path(out)
    layout = open_layout(root, dataset, classes)
    plan = pack_plan(layout, image_size, splits, quality, samples_per_shard)
    if stamp is not None:
        plan["source_stamp"] = stamp
    _start_or_resume(out, plan)
    todo = [
        shard for shards in plan["splits"].values() for shard in shards
        if not (out / shard["file"]).is_file()  # a shard file exists only once complete
    ]  # fmt: skip
    if todo:
        _write_shards(layout, out, plan, todo, workers or usable_cpus(), progress)
    manifest = _manifest(out, plan)
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def pack_cache(root, folder, image_size, dataset="auto", classes="", progress=True):
    """The dataset at `root` decoded once at the training size: a pack in `folder`.

    Written on first use (every split, `image_size`, `JPEG_QUALITY`); reused while
    the source's files are unchanged (`source_stamp`), rewritten when they change.
    Returns `folder` (a packed root).
    """
    folder = Path(folder)
    stamp = source_stamp(root, skip=folder)
    plan_path = folder / PLAN
    if plan_path.is_file():
        try:
            previous = json.loads(plan_path.read_text())
        except ValueError:
            previous = {}
        if previous.get("source_stamp") == stamp and previous.get("image_size") == image_size:
            if (folder / MANIFEST).is_file():
                return folder
        else:
            shutil.rmtree(folder)  # a pack of older files or another size: written anew
    elif folder.exists() and any(folder.iterdir()):
        raise ConfigError(
            f"pack_cache {folder} is not empty and holds no pack; give another folder"
        )
    print(f"Packing {root} at {image_size}x{image_size} into {folder} (once) ...", flush=True)
    pack(root, folder, image_size, dataset=dataset, classes=classes, progress=progress, stamp=stamp)
    return folder


def source_stamp(root, skip=None):
    """A digest of the names, sizes and modification times of the files under `root`
    (dot-folders such as the label cache, and `skip`, left out)."""
    digest = hashlib.sha256()
    skip = Path(skip).resolve() if skip is not None else None
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(
            name for name in subfolders
            if not name.startswith(".") and Path(folder, name).resolve() != skip
        )  # fmt: skip
        for name in sorted(files):
            info = os.stat(os.path.join(folder, name))
            relative = os.path.relpath(os.path.join(folder, name), root)
            digest.update(f"{relative}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _check_pack_arguments(image_size, splits, quality, samples_per_shard):
    for name, value in (("image_size", image_size), ("samples_per_shard", samples_per_shard)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if not (isinstance(quality, int) and 1 <= quality <= 100):
        raise ConfigError(f"quality must be an integer in 1..100, got {quality!r}")
    unknown = [split for split in splits if split not in PACKED_SPLITS]
    if unknown or not splits:
        raise ConfigError(f"splits must be among {PACKED_SPLITS}, got {list(splits)!r}")


def _start_or_resume(out, plan):
    """Write the plan into a new folder, or check that an existing one holds the same plan."""
    out.mkdir(parents=True, exist_ok=True)
    plan_path = out / PLAN
    if plan_path.is_file():
        try:
            previous = json.loads(plan_path.read_text())
        except ValueError:
            previous = None
        if previous != plan:
            raise ConfigError(
                f"{out} holds a pack with other settings or source ({plan_path}); use another "
                "--out or delete that folder"
            )
        (out / MANIFEST).unlink(missing_ok=True)  # rewritten once every shard is checked
    elif any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty and holds no pack; give an empty folder")
    else:
        atomic_write_text(plan_path, json.dumps(plan))
    remove_stale_temp_files(out)  # shards a killed pack left half-written


def _write_shards(layout, out, plan, shards, workers, progress):
    from tqdm import tqdm

    encoder = SampleEncoder(layout, plan["image_size"], plan["jpeg_quality"])
    total = sum(len(shard["ids"]) for shard in shards)
    with (
        Pool(encoder, workers, "processes") as pool,
        tqdm(total=total, desc="packing", unit="image", disable=not progress) as bar,
    ):
        for shard in shards:
            _write_shard(out / shard["file"], pool.map(shard["ids"]), bar)


def _write_shard(path, records, bar):
    # Written under a temporary name and renamed once closed and flushed: a
    # shard file that exists is complete, whenever the pack was killed.
    with atomic_path(path) as temp_path:
        # group_size 1: every record is its own chunk, so reading one decodes only it.
        writer = array_record().ArrayRecordWriter(str(temp_path), "group_size:1")
        try:
            for record in records:
                writer.write(record)
                bar.update(1)
        finally:
            writer.close()


def _manifest(out, plan):
    manifest = {key: value for key, value in plan.items() if key != "splits"}
    manifest["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    manifest["record"] = (
        "b'FPK2', uint32 id, uint32 JPEG length, JPEG (RGB), zlib(uint32 n, n uint8 run ids, "
        "n uint16 run lengths: the row-major label ids run-length coded)"
    )
    manifest["splits"] = {}
    for split, shards in plan["splits"].items():
        entries = [
            {**shard, "bytes": (out / shard["file"]).stat().st_size,
             "sha256": file_sha256(out / shard["file"])}
            for shard in shards
        ]  # fmt: skip
        manifest["splits"][split] = {"count": sum(len(s["ids"]) for s in shards), "shards": entries}
    return manifest
