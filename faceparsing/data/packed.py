"""Packed data: each split in a few ArrayRecord shards, read at the model's speed.

A pack (`data_generator.py pack`, or `pack_cache` at the training size) holds every
image decoded once at the packed size with its label map (`packing.py` writes, this
module reads): a sample is one small JPEG decode and one run-length expansion instead
of a 1024x1024 decode and 18 mask files (docs/performance.md).

```
P/manifest.json                        written last: format, source, sizes, shards, checksums
P/pack_plan.json                       the settings and shard assignment (for resuming)
P/{split}-{k:05d}-of-{n:05d}.array_record   one record per sample
```

Record layout (little-endian): b"FPK2", uint32 image id, uint32 JPEG length, the JPEG
(RGB, the packed size), then the label map run-length coded and deflated: zlib(uint32
run count n, n uint8 ids, n uint16 run lengths), the runs over the row-major ids (a run
longer than 65,535 pixels is cut in pieces). Format version 1 (b"FPK1", zlib of the raw
ids) is still read.

ArrayRecord (the random-access format grain reads) reads record i of a shard by index,
with neither TensorFlow nor JAX imported.
"""

import functools
import hashlib
import json
import os
import struct
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np

from faceparsing.classes import CELEBAMASK_HQ, class_set_from_config
from faceparsing.data.splits import check_split
from faceparsing.errors import ConfigError, DatasetError, first_line
from faceparsing.images import decode, resize_image, resize_nearest

MANIFEST = "manifest.json"
PLAN = "pack_plan.json"
FORMAT = "faceparsing-packed"
FORMAT_VERSION = 2
# Versions this code reads: a record names its own label coding (its magic).
READABLE_VERSIONS = (1, 2)
# Quality 95: ~1 grey level from the release's decode (docs/performance.md); 90 saves
# ~35% of the bytes but doubles that error.
JPEG_QUALITY = 95
# ~1,000 samples (~60-90 MB at 512) a shard: few files, and a killed pack loses at most
# one shard's work.
SAMPLES_PER_SHARD = 1000
PACKED_SPLITS = ("train", "val", "test")
_MAGIC = b"FPK2"
_MAGIC_ZLIB_LABELS = b"FPK1"  # format version 1: zlib of the raw ids
_HEADER = struct.Struct("<4sII")
_RUNS = struct.Struct("<I")
_MAX_RUN = 0xFFFF
# libjpeg writes RGB itself (OpenCV >= 4.10): no BGR->RGB pass afterwards.
_DECODE_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def is_packed(root):
    """True when `root` is a packed folder (it holds `manifest.json`)."""
    return os.path.isfile(os.path.join(root, MANIFEST))


_OPEN_PACKS = {}
_OPEN_LOCK = threading.Lock()


def open_pack(root):
    """The `PackedLayout` of folder `root`, opened once per process (per manifest version)."""
    path = Path(root) / MANIFEST
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns)
    except FileNotFoundError:
        raise DatasetError(f"{root} is not a packed folder: {path} not found") from None
    with _OPEN_LOCK:
        if key not in _OPEN_PACKS:
            _OPEN_PACKS[key] = PackedLayout(root)
        return _OPEN_PACKS[key]


def encode_record(image_id, image, label, quality=JPEG_QUALITY):
    """One record: the RGB image as a JPEG and the label map compressed, with the id."""
    ok_image, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok_image:
        raise DatasetError(f"cannot encode image {image_id} for packing")
    label_bytes = encode_label(label)
    return _HEADER.pack(_MAGIC, image_id, len(jpeg)) + jpeg.tobytes() + label_bytes


def encode_label(label):
    """A uint8 label map as zlib(run count, run ids, uint16 run lengths), row-major."""
    flat = np.ascontiguousarray(label, np.uint8).ravel()
    starts = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1])
    lengths = np.diff(np.append(starts, flat.size))
    # Runs longer than a uint16 become several runs of the same id.
    pieces = (lengths + _MAX_RUN - 1) // _MAX_RUN
    values = np.repeat(flat[starts], pieces)
    piece_lengths = np.full(int(pieces.sum()), _MAX_RUN, dtype="<u2")
    piece_lengths[np.cumsum(pieces) - 1] = lengths - (pieces - 1) * _MAX_RUN
    runs = _RUNS.pack(values.size) + values.tobytes() + piece_lengths.tobytes()
    return zlib.compress(runs, 9)


def decode_label(data, size):
    """The (size, size) uint8 label map of `encode_label`'s bytes, or None if they are damaged."""
    try:
        runs = zlib.decompress(data)
        (count,) = _RUNS.unpack_from(runs)
    except (zlib.error, struct.error):
        return None
    if len(runs) != _RUNS.size + 3 * count:
        return None
    values = np.frombuffer(runs, np.uint8, count, _RUNS.size)
    lengths = np.frombuffer(runs, "<u2", count, _RUNS.size + count)
    if int(lengths.sum(dtype=np.int64)) != size * size:
        return None
    return np.repeat(values, lengths).reshape(size, size)


def _decode_zlib_label(data, size):
    """Format version 1's label: zlib of the raw ids."""
    try:
        label = np.frombuffer(zlib.decompress(data), np.uint8)
    except zlib.error:
        return None
    return label.reshape(size, size) if label.size == size * size else None


_LABEL_DECODERS = {_MAGIC: decode_label, _MAGIC_ZLIB_LABELS: _decode_zlib_label}


def decode_record(record, where):
    """`(image_id, jpeg bytes, (label decoder, label bytes))` of a record; `where` names it
    in errors."""
    if len(record) < _HEADER.size:
        raise DatasetError(f"corrupt packed record in {where}: {len(record)} bytes")
    magic, image_id, jpeg_length = _HEADER.unpack_from(record)
    if magic not in _LABEL_DECODERS or _HEADER.size + jpeg_length > len(record):
        raise DatasetError(f"corrupt packed record in {where}: bad header")
    view = memoryview(record)
    jpeg = view[_HEADER.size : _HEADER.size + jpeg_length]
    return image_id, jpeg, (_LABEL_DECODERS[magic], view[_HEADER.size + jpeg_length :])


class PackedLayout:
    """A packed folder as a layout (see `layout.Layout`): the ids, classes and sample
    names of what was packed, read from shards opened once per thread (a reader is not
    shared between threads). Pickling keeps the folder only: a worker process opens its
    own shards. `open_layout` recognises a packed folder by its manifest.

    Args:
        root: str or Path. The packed folder.
    """

    kind = "packed"
    cache_dir = None  # the pack holds merged labels

    def __init__(self, root):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.image_size = self.label_size = self.manifest["image_size"]
        self.source_kind = self.manifest.get("layout", "celebamask_hq")
        saved = self.manifest.get("class_set")
        self.class_set = class_set_from_config(saved, str(self.root)) if saved else CELEBAMASK_HQ
        self._names = self.manifest.get("names", {})
        self._where = {}  # image id -> (shard file, position)
        for split in self.manifest["splits"].values():
            for shard in split["shards"]:
                for position, image_id in enumerate(shard["ids"]):
                    self._where[image_id] = (shard["file"], position)
        self._local = threading.local()

    def __getstate__(self):
        return {"root": self.root}

    def __setstate__(self, state):
        self.__init__(state["root"])

    def split_ids(self, split):
        """Sorted ids of a packed split ("all": every packed split)."""
        check_split(split)
        splits = self.manifest["splits"]
        if split != "all" and split not in splits:
            raise DatasetError(
                f"split {split!r} is not in the packed folder {self.root} (it holds "
                f"{', '.join(splits) or 'none'}); pack it with --splits {split}"
            )
        names = list(splits) if split == "all" else [split]
        return sorted(i for name in names for shard in splits[name]["shards"] for i in shard["ids"])

    def sample_name(self, image_id):
        return self._names.get(str(image_id), str(image_id))

    def load_sample(self, image_id, size, fast=False):
        """`(image, label)`: (size, size, 3) uint8 RGB and (size, size) uint8 ids.

        `fast` (augmented training batches, which colour jitter changes far more)
        decodes with libjpeg-turbo's fast DCT and upsampling where simplejpeg is
        installed, about 1 grey level from the exact decode that evaluation uses.
        """
        file, jpeg, packed_label = self._record(image_id)
        image = _decode_rgb(jpeg, fast)
        if image is None or image.shape[:2] != (self.image_size, self.image_size):
            raise DatasetError(f"corrupt packed image {image_id} in {self.root / file}")
        label = self._inflate(image_id, file, packed_label)
        if size != self.image_size:
            image = resize_image(image, (size, size))
            label = resize_nearest(label, (size, size))
        return image, label

    def load_image(self, image_id, size):
        return self.load_sample(image_id, size)[0]

    def load_label(self, image_id):
        """The label map of `image_id` at the packed size (the release's at 512)."""
        file, _, packed_label = self._record(image_id)
        return self._inflate(image_id, file, packed_label)

    def problems(self, ids, full=False):
        """Ids that are not packed and damaged shards: every shard's size against the
        manifest (quick), also re-hashed (`full`)."""
        ids = list(ids)
        missing = [image_id for image_id in ids if image_id not in self._where]
        if missing:
            return [
                f"{len(missing)} image id(s) are not in the packed folder {self.root} "
                f"(first: {missing[0]})"
            ]
        files = {self._where[image_id][0] for image_id in ids}
        found = []
        for shard in self._shards():
            if shard["file"] not in files:
                continue
            try:
                self._check_shard_file(shard)
            except DatasetError as error:
                found.append(str(error))
                continue
            if full and file_sha256(self.root / shard["file"]) != shard["sha256"]:
                found.append(f"packed shard {self.root / shard['file']}: checksum mismatch")
        return found

    def _inflate(self, image_id, file, packed_label):
        decoder, data = packed_label
        label = decoder(data, self.image_size)
        if label is None:
            raise DatasetError(f"corrupt packed label {image_id} in {self.root / file}")
        return label

    def _shards(self):
        return [shard for split in self.manifest["splits"].values() for shard in split["shards"]]

    def _check_shard_file(self, shard):
        path = self.root / shard["file"]
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise DatasetError(
                f"packed shard {path} is missing (pack it again: data_generator.py pack)"
            ) from None
        if size != shard["bytes"]:
            raise DatasetError(
                f"packed shard {path} is {size} bytes, the manifest says {shard['bytes']}: "
                "the pack is damaged (pack it again: data_generator.py pack)"
            )

    def _record(self, image_id):
        try:
            file, position = self._where[image_id]
        except KeyError:
            raise DatasetError(
                f"image {image_id} is not in the packed folder {self.root}"
            ) from None
        try:
            record = self._reader(file).read([position])[0]
        except DatasetError:
            raise
        except Exception as error:  # array_record raises plain RuntimeErrors
            raise DatasetError(
                f"cannot read sample {image_id} from packed shard {self.root / file}: "
                f"{first_line(error)}"
            ) from None
        stored_id, jpeg, packed_label = decode_record(record, self.root / file)
        if stored_id != image_id:
            raise DatasetError(f"packed shard {self.root / file} holds {stored_id}, not {image_id}")
        return file, jpeg, packed_label

    def _reader(self, file):
        readers = self._local.__dict__.setdefault("readers", {})
        reader = readers.get(file)
        if reader is None:
            path = self.root / file
            if not path.is_file():
                raise DatasetError(f"packed shard {path} is missing (pack it again)")
            # Random access: no read-ahead of the following records.
            reader = readers[file] = array_record().ArrayRecordReader(
                str(path), "readahead_buffer_size:0"
            )
        return reader


def array_record():
    """The `array_record` module, or a one-line error saying how to install it."""
    try:
        from array_record.python import array_record_module
    except ImportError:
        raise ConfigError(
            "packed folders need the array-record package: pip install 'faceparsing-deeplab[packed]'"
        ) from None
    return array_record_module


def _decode_rgb(jpeg, fast=False):
    simplejpeg = _simplejpeg() if fast else None
    if simplejpeg is not None:
        try:
            return simplejpeg.decode_jpeg(jpeg, "RGB", fastdct=True, fastupsample=True)
        except ValueError:
            return None
    if _DECODE_RGB is not None:
        return decode(jpeg, _DECODE_RGB)
    image = decode(jpeg, cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@functools.cache
def _simplejpeg():
    """The simplejpeg module (in the `packed` extra), or None: then OpenCV decodes."""
    try:
        import simplejpeg
    except ImportError:
        return None
    return simplejpeg


def read_manifest(root):
    """The manifest of a packed folder, checked; a one-line `DatasetError` otherwise."""
    path = Path(root) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{root} is not a packed folder: {path} not found") from None
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read the pack manifest {path}: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DatasetError(f"{path} is not a {FORMAT} manifest")
    if manifest.get("format_version") not in READABLE_VERSIONS:
        raise DatasetError(
            f"{path} has format version {manifest.get('format_version')!r}; this code reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))} (pack the release again)"
        )
    return manifest


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
