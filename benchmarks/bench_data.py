"""Samples per second of the training input pipeline against what the official scripts do.

Rows, all at one image size with augmentation on and the label cache warm:
- baseline: the official `g_mask.py` merge (`os.path.exists` + `cv2.imread` of every part PNG
  into a float64 canvas) and a plain `cv2.imread` + `cv2.resize` of the 1024x1024 JPEG (label:
  nearest), no augmentation, in one thread (and in a pool of N threads);
- ours, `dataset[i]` called in one thread (with and without the label cache);
- ours, what `fit` reads: a `TrainingStream` (in-order worker threads building batches ahead)
  asked for batches 0, 1, 2, ... as Keras asks, with 1, 2 and N worker threads (N = the cores
  this process may use);
- packed (`data_generator.py pack`, the set packed once at the row's size; its one-time cost is
  printed per 1,000 images): `dataset[i]` in one thread, and the `TrainingStream` with 1, 2 and
  N worker threads or worker processes (steady state: the workers are started and the first
  batch served before the clock starts; their start cost and memory are printed apart; the
  CPU seconds of a processes row add the workers' to this process's).
- through `fit`'s own data adapter (what `fit` receives): `model.predict` of a near-free Keras
  model (a global average of the image) reading an `EpochWindow` over the `TrainingStream`,
  with 1, 2 and N worker threads, from the release (label cache warm) and from the pack; and
  the same model reading the same batches from memory (the adapter's own ceiling).
Every row runs in this one process, interleaved over the repeats, and the best repeat is kept,
because the machine's cores may be shared and noisy.

Usage:
    python benchmarks/bench_data.py [--data-root DIR] [--num-images 64] [--sizes 512]
    python benchmarks/bench_data.py --smoke   # tiny, a few seconds (used by the tests)
"""

import argparse
import contextlib
import functools
import os
import sys
import tempfile
import time
from multiprocessing.pool import ThreadPool
from pathlib import Path

import cv2
import numpy as np

from faceparsing import images
from faceparsing.classes import PART_NAMES
from faceparsing.data import augment, layout, packed, packing, samples
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.data.stream import EpochWindow, TrainingStream
from faceparsing.data.synthetic import make_demo_dataset

# Per core means one thread a call for every row, the baseline's OpenCV calls included
# (the package sets this too, when `faceparsing.images` is imported).
cv2.setNumThreads(1)

# ---------------------------------------------------------------------------
# Baseline: the official merge and a plain OpenCV decode, as the official scripts do.
# ---------------------------------------------------------------------------


def baseline_label(root, image_id):
    """`g_mask.py`: exists + `cv2.imread` of every part, channel 0, into a float64 canvas."""
    folder = os.path.join(root, layout.MASK_DIR, str(image_id // layout.IMAGES_PER_MASK_FOLDER))
    canvas = np.zeros((layout.MASK_SIZE, layout.MASK_SIZE))
    for class_id, part in enumerate(PART_NAMES, start=1):
        filename = os.path.join(folder, f"{image_id:05d}_{part}.png")
        if os.path.exists(filename):
            mask = cv2.imread(filename)[:, :, 0]
            canvas[mask != 0] = class_id
    return canvas


def baseline_sample(root, image_id, size):
    image = cv2.imread(str(layout.image_path(root, image_id)))
    image = cv2.cvtColor(cv2.resize(image, (size, size)), cv2.COLOR_BGR2RGB)
    label = cv2.resize(
        baseline_label(root, image_id), (size, size), interpolation=cv2.INTER_NEAREST
    )
    return image, label.astype(np.uint8)


def run_baseline(root, ids, size, threads):
    """Load every id once; a pool of `threads` threads loads the samples."""
    if threads == 1:
        for image_id in ids:
            baseline_sample(root, image_id, size)
        return
    with ThreadPool(threads) as pool:
        for _ in pool.imap(lambda image_id: baseline_sample(root, image_id, size), ids):
            pass


# ---------------------------------------------------------------------------
# Ours: the dataset in one thread, and the TrainingStream that `fit` reads.
# ---------------------------------------------------------------------------


def make_dataset(root, size, batch_size, cache_dir):
    return CelebAMaskHQ(
        root, "all", batch_size=batch_size, image_size=size, augment=True, cache_dir=cache_dir,
        drop_remainder=True,
    )  # fmt: skip


def run_dataset(dataset, num_batches):
    """`dataset[i]` for `num_batches` batches (several passes if needed), in this thread."""
    for index in range(num_batches):
        dataset.batch(index % len(dataset), index // len(dataset))


def run_stream(dataset, num_batches, workers):
    """Batches 0, 1, 2, ... of a TrainingStream, as `fit` asks for them; returns the (wall,
    CPU) seconds from the first request to the last batch (the threads' start is timed, their
    shutdown is not)."""
    stream = TrainingStream(dataset, steps_per_epoch=len(dataset), workers=workers)
    try:
        start = time.perf_counter(), time.process_time()
        for index in range(num_batches):
            stream[index]
        return time.perf_counter() - start[0], time.process_time() - start[1]
    finally:
        stream.close()


def run_warm_stream(dataset, num_batches, workers, worker_type):
    """Like `run_stream`, but timed from after the first batch (workers started and busy)."""
    stream = TrainingStream(
        dataset, steps_per_epoch=len(dataset), workers=workers, worker_type=worker_type
    )
    try:
        stream[0]
        start = time.perf_counter(), time.process_time() + _worker_cpu(stream)
        for index in range(1, num_batches + 1):
            stream[index]
        cpu = time.process_time() + _worker_cpu(stream) - start[1]
        return time.perf_counter() - start[0], cpu
    finally:
        stream.close()


def _worker_cpu(stream):
    # The worker processes' CPU seconds (a benchmark may look inside the stream).
    pool = stream._executor
    return pool.cpu_seconds() if stream.worker_type == "processes" else 0.0


def near_free_model(size):
    """A Keras model whose step costs next to nothing: what is left is the feed."""
    import keras

    inputs = keras.Input((size, size, 3), dtype="uint8")
    pooled = keras.layers.GlobalAveragePooling2D()(keras.ops.cast(inputs, "float32"))
    return keras.Model(inputs, pooled)


def run_adapter(model, dataset, num_batches, workers):
    """`model.predict` over `num_batches` stream batches, through Keras' adapter."""
    stream = TrainingStream(dataset, steps_per_epoch=num_batches, workers=workers)
    with stream:
        start = time.perf_counter(), time.process_time()
        model.predict(EpochWindow(stream), verbose=0)
        return time.perf_counter() - start[0], time.process_time() - start[1]


def run_memory_adapter(model, batches):
    """`model.predict` over batches held in memory, through the same adapter."""
    import keras

    class InMemory(keras.utils.PyDataset):
        def __len__(self):
            return len(batches)

        def __getitem__(self, index):
            return batches[index]

    start = time.perf_counter(), time.process_time()
    model.predict(InMemory(), verbose=0)
    return time.perf_counter() - start[0], time.process_time() - start[1]


def adapter_rows(root, pack_root, size, batch_size, cache_dir, workers_list, passes):
    """What `fit`'s adapter receives (see the module docstring)."""
    model = near_free_model(size)
    release = make_dataset(root, size, batch_size, cache_dir)
    pack = make_dataset(pack_root, size, batch_size, None)
    num_batches = passes * len(release)
    loaded = num_batches * batch_size
    in_memory = [release.batch(index % len(release), 0) for index in range(num_batches)]
    model.predict(in_memory[0][0], verbose=0)  # traced before any row is timed
    table = [("adapter: in-memory batches", 1, timed(run_memory_adapter, model, in_memory), loaded)]
    for name, dataset in (("release", release), ("pack", pack)):
        for workers in workers_list:
            run = functools.partial(run_adapter, model, dataset, num_batches, workers)
            table.append((f"adapter: TrainingStream, {name}", workers, run, loaded))
    return table


def timed(function, *args):
    """A callable running `function(*args)` and returning its (wall, CPU) seconds."""

    def run():
        start = time.perf_counter(), time.process_time()
        function(*args)
        return time.perf_counter() - start[0], time.process_time() - start[1]

    return run


def warm_cache(root, cache_dir):
    cache = samples.LabelCache(root, cache_dir)
    for image_id in layout.split_ids(root, "all"):
        cache.load(image_id)


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------
# Measurement and report.
# ---------------------------------------------------------------------------


def rows(root, ids, size, batch_size, cache_dir, workers_list, passes):
    """(name, threads, callable returning (wall, CPU) seconds, samples loaded) for one size."""
    cached = make_dataset(root, size, batch_size, cache_dir)
    uncached = make_dataset(root, size, batch_size, None)
    # Several passes, so that the batches a stream builds ahead of the last one weigh little.
    num_batches = passes * len(cached)
    loaded = num_batches * batch_size
    table = [("baseline", 1, timed(run_baseline, root, ids, size, 1), len(ids))]
    if max(workers_list) > 1:
        threads = max(workers_list)
        table.append(("baseline", threads, timed(run_baseline, root, ids, size, threads), len(ids)))
    table += [
        ("ours: dataset[i]", 1, timed(run_dataset, cached, num_batches), loaded),
        ("ours: dataset[i], no label cache", 1, timed(run_dataset, uncached, len(cached)),
         len(cached) * batch_size),
    ]  # fmt: skip
    for workers in workers_list:
        stream = functools.partial(run_stream, cached, num_batches, workers)
        table.append(("ours: TrainingStream", workers, stream, loaded))
    return table


def packed_rows(pack_root, size, batch_size, workers_list, passes):
    """The rows of a packed folder (see the module docstring)."""
    dataset = make_dataset(pack_root, size, batch_size, None)
    num_batches = passes * len(dataset)
    loaded = num_batches * batch_size
    table = [("packed: dataset[i]", 1, timed(run_dataset, dataset, num_batches), loaded)]
    for worker_type in ("threads", "processes"):
        for workers in workers_list:
            run = functools.partial(run_warm_stream, dataset, num_batches, workers, worker_type)
            table.append((f"packed: TrainingStream, {worker_type}", workers, run, loaded))
    return table


def pack_once(root, out, size, workers):
    """Pack the set at `size`; return the seconds it took per 1,000 images."""
    start = time.perf_counter()
    manifest = packing.pack(root, out, image_size=size, workers=workers, progress=False)
    count = sum(split["count"] for split in manifest["splits"].values())
    return 1000 * (time.perf_counter() - start) / count


def reencoding_error(root, pack_root, size):
    """(mean absolute difference in grey levels, PSNR dB) of the packed images vs the release's."""
    differences = np.stack([
        samples.load_image(root, image_id, size).astype(np.float64)
        - samples.load_image(pack_root, image_id, size)
        for image_id in layout.split_ids(root, "all")
    ])  # fmt: skip
    return np.abs(differences).mean(), 10 * np.log10(255**2 / (differences**2).mean())


def worker_start_cost(dataset):
    """(seconds to start one worker process and get its first batch, its resident MiB)."""
    from faceparsing.data.workers import ProcessPool

    start = time.perf_counter()
    with ProcessPool(dataset.batch_maker(), 1) as pool:
        pool.submit((0, 0)).result()
        seconds = time.perf_counter() - start
        with open(f"/proc/{pool.pids[0]}/status") as status:
            rss = next(line for line in status if line.startswith("VmRSS"))
    return seconds, int(rss.split()[1]) / 1024


def measure(table, repeats):
    """Interleave the rows over `repeats` passes; keep the best samples/s and samples per
    CPU second of each."""
    best = {}
    for _ in range(repeats):
        for name, threads, run, count in table:
            wall, cpu = run()
            previous = best.get((name, threads), (0.0, 0.0))
            best[name, threads] = (max(previous[0], count / wall), max(previous[1], count / cpu))
    return best


def print_packed(pack_seconds, error, start_cost):
    print(
        f"pack: {pack_seconds:.1f} s per 1,000 images (all cores); re-encoded images (JPEG "
        f"quality {packed.JPEG_QUALITY}) differ from the release's decode by {error[0]:.2f} grey "
        f"levels on average (PSNR {error[1]:.1f} dB); one worker process: {start_cost[0]:.2f} s "
        f"to start and serve its first batch, {start_cost[1]:.0f} MiB resident"
    )


def print_table(size, rates, repeats):
    baseline = rates["baseline", 1][0]
    one_thread = rates["ours: dataset[i]", 1][0]
    print(f"\n### {size}x{size}, augmentation on (ours), best of {repeats}")
    print(
        "| pipeline | threads | samples/s | per thread / baseline | / ours dataset[i] "
        "| samples per CPU-s |"
    )
    print("|---|---|---|---|---|---|")
    for (name, threads), (rate, cpu_rate) in rates.items():
        print(
            f"| {name} | {threads} | {rate:.1f} | {rate / threads / baseline:.2f}x "
            f"| {rate / one_thread:.2f}x | {cpu_rate:.1f} |"
        )
    cpu_baseline = rates["baseline", 1][1]
    cpu_ours = rates["ours: dataset[i]", 1][1]
    print(
        f"\nper CPU-second, ours dataset[i] / baseline = {cpu_ours / cpu_baseline:.2f}x "
        "(CPU time is what a shared machine's load distorts least)"
    )


# ---------------------------------------------------------------------------
# How much of a sample's CPU time runs with the GIL released (measurable under load).
# ---------------------------------------------------------------------------


class _TimedOpenCV:
    """Stands for the `cv2` module, adding the thread CPU time of every call to `seconds`."""

    def __init__(self):
        self.seconds = 0.0

    def __getattr__(self, name):
        value = getattr(cv2, name)
        if not (callable(value) and name[0].islower()):
            return value

        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return value(*args, **kwargs)
            finally:
                self.seconds += time.thread_time() - start

        return timed


@contextlib.contextmanager
def timed_opencv():
    """Route the data modules' OpenCV calls through one `_TimedOpenCV` while inside."""
    proxy, modules = _TimedOpenCV(), (images, augment, samples)
    for module in modules:
        module.cv2 = proxy
    try:
        yield proxy
    finally:
        for module in modules:
            module.cv2 = cv2


def opencv_share(dataset, num_batches):
    """(CPU seconds a sample, share of it inside OpenCV calls), one thread."""
    with timed_opencv() as proxy:
        start = time.thread_time()
        run_dataset(dataset, num_batches)
        total = time.thread_time() - start
    return total / (num_batches * dataset.batch_size), proxy.seconds / total


def print_opencv_share(dataset, num_batches):
    seconds, share = opencv_share(dataset, num_batches)
    bound = 1 / ((1 - share) + share / 2)
    print(
        f"one thread, `dataset[i]`: {1e3 * seconds:.2f} ms of CPU a sample, {100 * share:.0f}% "
        f"of it inside OpenCV calls (GIL released); if all the rest held the GIL, 2 threads "
        f"could make at most {bound:.2f}x one thread"
    )


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="dataset root; a synthetic set is written if empty")
    parser.add_argument("--num-images", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512])
    parser.add_argument(
        "--workers", type=int, nargs="+", help="TrainingStream workers (default: 1, 2, cores)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--passes", type=int, default=2, help="passes over the set per row")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the tests")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_images, args.sizes, args.batch_size, args.repeats, args.passes = 4, [64], 2, 1, 1
    if not args.workers:
        args.workers = sorted({1, 2, available_cores()})
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
        print(
            f"{len(ids)} images, batch {args.batch_size}, {available_cores()} core(s) usable, "
            f"OpenCV {cv2.__version__} with {cv2.getNumThreads()} thread(s) a call, "
            f"load average {' '.join(f'{load:.1f}' for load in os.getloadavg())}"
        )
        for size in args.sizes:
            pack_root = Path(temp) / f"packed_{size}"
            pack_seconds = pack_once(root, pack_root, size, available_cores())
            table = rows(root, ids, size, args.batch_size, cache_dir, args.workers, args.passes)
            table += packed_rows(pack_root, size, args.batch_size, args.workers, args.passes)
            table += adapter_rows(
                root, pack_root, size, args.batch_size, cache_dir, args.workers, args.passes
            )
            print_table(size, measure(table, args.repeats), args.repeats)
            start_cost = worker_start_cost(make_dataset(pack_root, size, args.batch_size, None))
            print_packed(pack_seconds, reencoding_error(root, pack_root, size), start_cost)
            dataset = make_dataset(root, size, args.batch_size, cache_dir)
            print_opencv_share(dataset, args.passes * len(dataset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
