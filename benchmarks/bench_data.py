"""Samples per second of the input pipeline, as built and as `fit` receives it.

Rows, all at one image size with augmentation on (ours) and the label cache warm:
- official: the official `g_mask.py` merge (`os.path.exists` + `cv2.imread` of every part
  PNG into a float64 canvas) and a plain `cv2.imread` + `cv2.resize` of the 1024x1024 JPEG
  (label: nearest), no augmentation, one thread;
- the producer: `dataset.batch(i, epoch)` called in one thread, from the release folder (with
  and without the label cache) and from a pack of the set at the row's size;
- the consumer, what `fit` receives: `model.fit` of a near-free model (it reads one pixel of
  each image: the cost left is the feed) on the dataset itself, through Keras' own adapter,
  with 1 and 2 (and N) workers building batches ahead, threads or processes, from the
  release and from the pack; and the same model fed the same batches from memory (the
  adapter's ceiling). Timed in the steady state, from the end of fit's second step to the
  end of its last (a callback's clock); worker processes are started before (their start
  cost is printed apart) and their CPU time counts in "samples per CPU-s".
Every row runs in this one process, interleaved over the repeats, and the best repeat is
kept. Run it on an idle machine: the worker rows need free cores.

Usage:
    python benchmarks/bench_data.py [--data-root DIR] [--num-images 64] [--sizes 512]
    python benchmarks/bench_data.py --smoke   # tiny, a few seconds (used by the tests)
"""

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

import faceparsing  # noqa: F401  (sets TensorFlow's log level before Keras loads)
from faceparsing.classes import PART_NAMES
from faceparsing.data import packing, release
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.data.layout import open_layout
from faceparsing.data.loader import usable_cpus
from faceparsing.data.synthetic import make_demo_dataset

# One thread a call for every row, the official path's OpenCV calls included (the package
# sets this too, when `faceparsing.images` is imported).
cv2.setNumThreads(1)


def official_label(root, image_id):
    """`g_mask.py`: exists + `cv2.imread` of every part, channel 0, into a float64 canvas."""
    folder = release.mask_folder(root, image_id)
    canvas = np.zeros((release.MASK_SIZE, release.MASK_SIZE))
    for class_id, part in enumerate(PART_NAMES, start=1):
        filename = os.path.join(folder, f"{image_id:05d}_{part}.png")
        if os.path.exists(filename):
            mask = cv2.imread(filename)[:, :, 0]
            canvas[mask != 0] = class_id
    return canvas


def official_sample(root, image_id, size):
    image = cv2.imread(str(release.image_path(root, image_id)))
    image = cv2.cvtColor(cv2.resize(image, (size, size)), cv2.COLOR_BGR2RGB)
    label = cv2.resize(
        official_label(root, image_id), (size, size), interpolation=cv2.INTER_NEAREST
    )
    return image, label.astype(np.uint8)


def dataset_of(root, size, batch_size, cache_dir=None, **options):
    return CelebAMaskHQ(
        root, "all", batch_size=batch_size, image_size=size, augment=True, cache_dir=cache_dir,
        drop_remainder=True, **options,
    )  # fmt: skip


def produce(dataset, num_batches):
    """`dataset.batch(i, epoch)` for `num_batches` batches (several passes), in this thread."""
    for index in range(num_batches):
        dataset.batch(*dataset.maker.locate(index))


def near_free_model(size):
    """A Keras model that reads one pixel of each image: what is left is the feed."""
    import keras
    from keras import ops

    inputs = keras.Input((size, size, 3), dtype="uint8")
    pixel = keras.layers.Flatten()(ops.cast(inputs[:, :1, :1, :], "float32"))
    model = keras.Model(inputs, keras.layers.Dense(1)(pixel))
    model.compile("sgd", loss=lambda labels, outputs: ops.mean(outputs))
    return model


def consume(model, dataset, batch_size=None):
    """`model.fit` for one epoch of `dataset`, through Keras' own adapter; returns the (wall,
    CPU) seconds of its steady state, from the end of its second step to the end of its last
    (fit's set-up and the workers' first batches left out), and the samples in them."""
    import keras

    marks = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1 or batch == len(dataset) - 1:
                marks.append((time.perf_counter(), time.process_time() + child_cpu_seconds()))

    model.fit(dataset, epochs=1, shuffle=False, verbose=0, callbacks=[Clock()])
    (wall_0, cpu_0), (wall_1, cpu_1) = marks
    return wall_1 - wall_0, cpu_1 - cpu_0, (len(dataset) - 2) * (batch_size or dataset.batch_size)


class InMemory:
    """The batches of `dataset` held in memory, as a Keras dataset (the adapter's ceiling)."""

    def __new__(cls, dataset):
        import keras

        # steps_per_epoch may run over several passes
        batches = [dataset.batch(*dataset.maker.locate(i)) for i in range(len(dataset))]

        class Batches(keras.utils.PyDataset):
            batch_size = dataset.batch_size

            def __len__(self):
                return len(batches)

            def __getitem__(self, index):
                return batches[index]

        return Batches()


def child_cpu_seconds():
    """CPU seconds of this process's live children (worker processes), from /proc."""
    ticks, total = os.sysconf("SC_CLK_TCK"), 0.0
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def timed(function, *args):
    """A callable running `function(*args)` and returning its (wall, CPU) seconds, the CPU
    of this process and of its worker processes."""

    def run():
        start = time.perf_counter(), time.process_time() + child_cpu_seconds()
        function(*args)
        return time.perf_counter() - start[0], time.process_time() + child_cpu_seconds() - start[1]

    return run


def fed(model, dataset):
    """A callable running one `consume` epoch and returning its steady state's (wall, CPU)
    seconds scaled to one sample (the table multiplies by the row's count)."""

    def run():
        wall, cpu, samples = consume(model, dataset)
        return wall / samples, cpu / samples

    return run


def rows(root, pack_root, size, args, cache_dir):
    """(name, workers, callable returning (wall, CPU) seconds, samples loaded) of one size,
    and the datasets whose workers must be closed afterwards."""
    batch, passes = args.batch_size, args.passes
    cached = dataset_of(root, size, batch, cache_dir)
    packed = dataset_of(pack_root, size, batch)
    num_batches = passes * len(cached)
    count = num_batches * batch
    ids = cached.ids
    official = functools.partial(lambda: [official_sample(root, i, size) for i in ids])
    table = [
        ("official path", 1, timed(official), len(ids)),
        ("release: dataset.batch", 1, timed(produce, cached, num_batches), count),
        ("release, no label cache: dataset.batch", 1,
         timed(produce, dataset_of(root, size, batch), len(cached)), len(cached) * batch),
        ("pack: dataset.batch", 1, timed(produce, packed, num_batches), count),
    ]  # fmt: skip
    model = near_free_model(size)
    consume(model, InMemory(packed))  # traced before any row is timed
    memory = InMemory(dataset_of(pack_root, size, batch, steps_per_epoch=num_batches))
    table.append(("fit: in-memory batches", 0, fed(model, memory), 1))
    opened = []
    for name, source, cache in (("release", root, cache_dir), ("pack", pack_root, None)):
        for worker_type in args.worker_types:
            for workers in args.workers:
                dataset = dataset_of(source, size, batch, cache, workers=workers,
                                     worker_type=worker_type, steps_per_epoch=num_batches)  # fmt: skip
                started = time.perf_counter()
                dataset[0]  # workers started (their cost is not the feed's)
                if worker_type == "processes" and workers == args.workers[0]:
                    print(f"{workers} worker process(es) started and served a batch in "
                          f"{time.perf_counter() - started:.2f} s")  # fmt: skip
                opened.append(dataset)
                table.append(
                    (f"fit: {name}, worker {worker_type}", workers, fed(model, dataset), 1)
                )
    return table, opened


def measure(table, repeats):
    """Interleave the rows over `repeats` passes; keep each row's best samples/s and
    samples per CPU-second."""
    best = {}
    for _ in range(repeats):
        for name, workers, run, count in table:
            wall, cpu = run()
            previous = best.get((name, workers), (0.0, 0.0))
            best[name, workers] = (max(previous[0], count / wall), max(previous[1], count / cpu))
    return best


def print_table(size, rates, repeats):
    official = rates["official path", 1]
    print(f"\n### {size}x{size}, augmentation on (ours), best of {repeats}")
    print("| pipeline | workers | samples/s | / official, per core | / one thread, same data "
          "| samples per CPU-s | per CPU-s / official |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for (name, workers), (rate, cpu_rate) in rates.items():
        source = "pack" if "pack" in name else "release"
        one_thread = rates[f"{source}: dataset.batch", 1][0]
        print(
            f"| {name} | {workers} | {rate:.1f} | {rate / max(1, workers) / official[0]:.2f}x "
            f"| {rate / one_thread:.2f}x | {cpu_rate:.1f} | {cpu_rate / official[1]:.2f}x |"
        )


def warm_label_cache(root, cache_dir):
    layout = open_layout(root, cache_dir=cache_dir)
    for image_id in layout.split_ids("all"):
        layout.load_label(image_id)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="a dataset in the release layout (default: synthetic)")
    parser.add_argument("--num-images", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512])
    parser.add_argument("--workers", type=int, nargs="+", help="default: 1, 2 and the cores")
    parser.add_argument("--worker-types", nargs="+", default=["threads", "processes"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--passes", type=int, default=2, help="passes over the set per row")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the tests")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_images, args.sizes, args.batch_size, args.repeats, args.passes = 8, [64], 2, 1, 2
        args.workers, args.worker_types = args.workers or [2], ["threads"]
    args.workers = args.workers or sorted({1, 2, usable_cpus()})
    return args


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as temp:
        root = Path(args.data_root or Path(temp) / "CelebAMask-HQ")
        if not (root / release.MAPPING_FILE).is_file():
            print(f"writing {args.num_images} synthetic faces to {root}", flush=True)
            make_demo_dataset(root, args.num_images, seed=0)
        cache_dir = Path(temp) / "label_cache"
        warm_label_cache(root, cache_dir)
        print(
            f"{len(open_layout(root).split_ids('all'))} images, batch {args.batch_size}, "
            f"{usable_cpus()} usable core(s), OpenCV {cv2.__version__}, load average "
            f"{' '.join(f'{load:.1f}' for load in os.getloadavg())}"
        )
        for size in args.sizes:
            started = time.perf_counter()
            pack_root = Path(temp) / f"pack_{size}"
            manifest = packing.pack(root, pack_root, image_size=size, progress=False)
            count = sum(split["count"] for split in manifest["splits"].values())
            print(f"pack at {size}: {1000 * (time.perf_counter() - started) / count:.1f} s per "
                  f"1,000 images ({usable_cpus()} cores)")  # fmt: skip
            table, opened = rows(root, pack_root, size, args, cache_dir)
            try:
                print_table(size, measure(table, args.repeats), args.repeats)
            finally:
                for dataset in opened:
                    dataset.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
