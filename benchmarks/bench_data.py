"""Samples per second of the CelebAMaskHQ PyDataset against a naive baseline loader.

The baseline is what the official scripts and most public projects do: `g_mask.py`'s merge
(`os.path.exists` + a full read of each part PNG into a float64 canvas) and a full 1024x1024
JPEG decode, float conversion and bilinear resize (label: nearest). Both pipelines then apply
the same augmentation, so the ratio measures loading alone. Every configuration runs in this
one process, interleaved over the repeats, because the machine's cores are shared and noisy.

Usage:
    python benchmarks/bench_data.py [--num-images 96] [--sizes 256 512] [--workers 1 2]
    python benchmarks/bench_data.py --smoke   # tiny, a few seconds (used by the tests)
"""

import argparse
import functools
import os
import sys
import tempfile
import time
from multiprocessing.pool import ThreadPool
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from faceparsing.classes import PART_NAMES
from faceparsing.data import augment, layout, samples
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.data.synthetic import make_demo_dataset

# ---------------------------------------------------------------------------
# Baseline: the official merge and a naive decode, written as users write them.
# ---------------------------------------------------------------------------


def baseline_label(root, image_id):
    """`g_mask.py`: exists + full read of every part into a float64 canvas."""
    folder = os.path.join(root, layout.MASK_DIR, str(image_id // layout.IMAGES_PER_MASK_FOLDER))
    canvas = np.zeros((layout.MASK_SIZE, layout.MASK_SIZE))
    for class_id, part in enumerate(PART_NAMES, start=1):
        filename = os.path.join(folder, f"{image_id:05d}_{part}.png")
        if os.path.exists(filename):
            mask = np.array(Image.open(filename))
            if mask.ndim == 3:  # cv2.imread gives 3 channels; g_mask keeps channel 0
                mask = mask[:, :, 0]
            canvas[mask != 0] = class_id
    return canvas


def baseline_sample(root, image_id, size, augment_seed):
    image = np.asarray(
        Image.open(layout.image_path(root, image_id)).convert("RGB"), dtype=np.float32
    )
    channels = [
        np.asarray(Image.fromarray(image[:, :, c], mode="F").resize((size, size), Image.BILINEAR))
        for c in range(3)
    ]
    image = np.stack(channels, axis=-1)
    label = Image.fromarray(baseline_label(root, image_id).astype(np.uint8))
    label = np.asarray(label.resize((size, size), Image.NEAREST))
    if augment_seed is not None:
        rng = np.random.default_rng((augment_seed, image_id))
        image, label = augment.augment_sample(np.clip(image, 0, 255).astype(np.uint8), label, rng)
    return image.astype(np.float32), label.astype(np.int32)


def run_baseline(root, ids, size, workers, batch_size, augment_seed=0):
    """Load every id in batches; a thread pool of `workers` loads the samples."""
    batches = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]

    def load_batch(batch):
        samples = [baseline_sample(root, image_id, size, augment_seed) for image_id in batch]
        return np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples])

    if workers == 1:
        for batch in batches:
            load_batch(batch)
        return
    with ThreadPool(workers) as pool:
        for _ in pool.imap(load_batch, batches):
            pass


# ---------------------------------------------------------------------------
# Ours: the PyDataset, iterated the way `model.fit` iterates it.
# ---------------------------------------------------------------------------


def run_dataset(root, size, workers, batch_size, cache_dir):
    dataset = CelebAMaskHQ(
        root, "all", batch_size=batch_size, image_size=size, augment=True, shuffle=False,
        cache_dir=cache_dir, workers=workers,
    )  # fmt: skip
    if workers == 1:
        for index in range(len(dataset)):
            dataset[index]
        return
    # Through Keras' own data adapter, as `fit` reads it (with workers > 1 a thread pool
    # fills a queue), behind a model that only averages each image.
    averaging_model(size).predict(dataset, verbose=0)


@functools.cache
def averaging_model(size):
    """A model that costs next to nothing, built (and traced) once per image size."""
    inputs = keras.Input((size, size, 3))
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))


def warm_cache(root, cache_dir):
    cache = samples.LabelCache(root, cache_dir)
    for image_id in layout.split_ids(root, "all"):
        cache.load(image_id)


# ---------------------------------------------------------------------------
# Measurement and report.
# ---------------------------------------------------------------------------


def configurations(root, ids, size, workers_list, batch_size, cache_dir):
    """(name, workers, callable) for every row of one image size."""
    rows = []
    for workers in workers_list:
        rows += [
            ("baseline", workers, lambda w=workers: run_baseline(root, ids, size, w, batch_size)),
            ("ours, no cache", workers,
             lambda w=workers: run_dataset(root, size, w, batch_size, None)),
            ("ours, label cache", workers,
             lambda w=workers: run_dataset(root, size, w, batch_size, cache_dir)),
        ]  # fmt: skip
    return rows


def measure(rows, num_images, repeats):
    """Interleave the rows over `repeats` passes; keep the best samples/s of each."""
    best = {}
    for _ in range(repeats):
        for name, workers, run in rows:
            start = time.perf_counter()
            run()
            rate = num_images / (time.perf_counter() - start)
            best[name, workers] = max(best.get((name, workers), 0.0), rate)
    return best


def print_table(size, rates, workers_list):
    print(f"\n### image size {size}x{size} (augment on), samples/s, best of repeats")
    print("| pipeline | " + " | ".join(f"{w} worker(s)" for w in workers_list) + " |")
    print("|---|" + "---|" * len(workers_list))
    names = ["baseline", "ours, no cache", "ours, label cache"]
    for name in names:
        cells = " | ".join(f"{rates[name, w]:.1f}" for w in workers_list)
        print(f"| {name} | {cells} |")
    for name in names[1:]:
        cells = " | ".join(f"{rates[name, w] / rates['baseline', w]:.2f}x" for w in workers_list)
        print(f"| ratio {name} / baseline | {cells} |")
    for name in names:
        first, last = workers_list[0], workers_list[-1]
        if last != first:
            print(f"scaling {name}: {last} vs {first} worker(s) = "
                  f"{rates[name, last] / rates[name, first]:.2f}x")  # fmt: skip


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="dataset root; a synthetic set is written if empty")
    parser.add_argument("--num-images", type=int, default=96)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny run for the tests")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_images, args.sizes, args.batch_size, args.repeats = 4, [64], 2, 1
    return args


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as temp:
        root = Path(args.data_root or Path(temp) / "CelebAMask-HQ")
        if not (root / layout.MAPPING_FILE).is_file():
            print(f"writing {args.num_images} synthetic faces to {root}", flush=True)
            make_demo_dataset(root, args.num_images, seed=0)
        ids = layout.split_ids(root, "all")
        cache_dir = Path(temp) / "label_cache"
        warm_cache(root, cache_dir)
        print(f"{len(ids)} images, batch {args.batch_size}, {os.cpu_count()} CPU(s) visible")
        for size in args.sizes:
            rows = configurations(root, ids, size, args.workers, args.batch_size, cache_dir)
            rates = measure(rows, len(ids), args.repeats)
            print_table(size, rates, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
