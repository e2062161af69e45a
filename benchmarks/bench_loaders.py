"""The project's loader against the maintained ones, on the same batches, as `fit` reads them.

Every row delivers the same batches, in order: the packed set's `BatchMaker` at one size
with augmentation (so the work per batch is the same), built by 2 workers (`--workers`),
read by `model.fit` of a near-free model (it reads one pixel of each image; see
`bench_data.py`). Rows:
- ours, threads / processes: the dataset with `workers` (`faceparsing.data.loader`);
- concurrent.futures: a `ProcessPoolExecutor` (spawned) mapping the same maker, results
  pickled through its pipe (ours without the shared-memory replies), in a `PyDataset`;
- tf.data: `Dataset.range(n).map(numpy_function(maker), num_parallel_calls=workers,
  deterministic=True).prefetch(2)`, given to `fit` as it is (TensorFlow only);
- grain: `grain.python.DataLoader(worker_count=workers)` over a source whose record i is
  batch i (skipped when grain is not installed; it imports JAX when JAX is installed, in
  every worker too: the start time shows it).
Printed: samples/s of the best repeat, samples per CPU-second (this process and its
workers), and each loader's start time (workers started, first batch served).

Usage:
    python benchmarks/bench_loaders.py [--num-images 64] [--size 512] [--workers 2]
    python benchmarks/bench_loaders.py --smoke
"""

import argparse
import concurrent.futures
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

from bench_data import InMemory, consume, near_free_model

from faceparsing.data import packing
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.data.synthetic import make_demo_dataset


def in_order(batches, count):
    """A Keras dataset of `count` batches taken in order from the iterator `batches`."""
    import keras

    pulled = {}

    class Ordered(keras.utils.PyDataset):
        def __len__(self):
            return count

        def __getitem__(self, index):  # Keras reads 0 and 1 twice: kept until passed
            while index not in pulled:
                pulled[len(pulled) and max(pulled) + 1] = next(batches)
            for old in [key for key in pulled if key < index - 1]:
                pulled[old] = None
            return pulled[index]

    return Ordered()


class PickledProcesses:
    """concurrent.futures' process pool mapping the maker; results pickled through the pipe."""

    def __init__(self, maker, workers, count):
        from faceparsing.data.loader import _main_script_hidden

        context = multiprocessing.get_context("spawn")
        self.executor = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context)
        self.maker, self.count = maker, count
        with _main_script_hidden():
            [future.result() for future in [self.executor.submit(abs, 0) for _ in range(workers)]]

    def warm(self):
        self.executor.submit(self.maker, (0, 0)).result()

    def dataset(self):
        maker = self.maker
        requests = [maker.locate(index) for index in range(self.count)]
        results = self.executor.map(maker, requests, chunksize=1)
        return in_order((batch for batch, _ in results), self.count)

    def close(self):
        self.executor.shutdown()


class TFData:
    """tf.data's parallel map over the maker (`numpy_function`), prefetching."""

    def __init__(self, maker, workers, count):
        self.maker, self.workers, self.count = maker, workers, count

    def warm(self):
        next(iter(self.dataset().take(1)))

    def dataset(self):
        import tensorflow as tf

        maker, first = self.maker, self.maker.make(0, 0)[0]
        shapes, dtypes = [a.shape for a in first], [tf.as_dtype(a.dtype) for a in first]

        def make(index):
            return maker.make(*maker.locate(int(index)))[0]

        def mapped(index):
            arrays = tf.numpy_function(make, [index], dtypes)
            return tuple(tf.ensure_shape(a, shape) for a, shape in zip(arrays, shapes, strict=True))

        return (
            tf.data.Dataset.range(self.count)
            .map(mapped, num_parallel_calls=self.workers, deterministic=True)
            .prefetch(2)
        )

    def close(self):
        pass


class Grain:
    """grain's DataLoader with worker processes over a source whose record i is batch i."""

    def __init__(self, maker, workers, count):
        import grain.python as grain
        from absl import flags

        flags.FLAGS.mark_as_parsed()  # grain reads its absl flags; this script has none
        total = 1 + count * 100  # one iterator (its workers start with it) for every repeat
        loader = grain.DataLoader(
            data_source=BatchSource(maker, total),
            sampler=grain.SequentialSampler(total, grain.NoSharding()),
            worker_count=workers,
        )
        self.batches, self.count = iter(loader), count

    def warm(self):
        next(self.batches)

    def dataset(self):
        return in_order(self.batches, self.count)

    def close(self):
        pass


class BatchSource:
    """Record i: batch i of the maker's passes (a grain random-access source)."""

    def __init__(self, maker, count):
        self.maker, self.count = maker, count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return self.maker.make(*self.maker.locate(int(index)))[0]


class Ours:
    """The dataset with its own workers; one pool serves every repeat, as in a training run."""

    def __init__(self, root, size, batch_size, workers, kind, count):
        self.data = CelebAMaskHQ(
            root, "all", batch_size=batch_size, image_size=size, augment=True,
            drop_remainder=True, workers=workers, worker_type=kind, steps_per_epoch=count,
        )  # fmt: skip

    def warm(self):
        self.data[0]

    def dataset(self):
        return self.data

    def close(self):
        self.data.close()


def measure(name, start, repeats, batch_size, model):
    started = time.perf_counter()
    loader = start()
    loader.warm()  # workers started and a first batch served
    start_seconds = time.perf_counter() - started
    best = (0.0, 0.0)
    try:
        for _ in range(repeats):
            wall, cpu, samples = consume(model, loader.dataset(), batch_size)
            best = max(best[0], samples / wall), max(best[1], samples / cpu)
    finally:
        loader.close()
    print(f"| {name} | {best[0]:.1f} | {best[1]:.1f} | {start_seconds:.1f} |", flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=64)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=32, help="batches a repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny run for the tests")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_images, args.size, args.batch_size, args.batches, args.repeats = 8, 64, 2, 4, 1
    return args


def main(argv=None):
    args = parse_args(argv)
    import keras

    with tempfile.TemporaryDirectory() as temp:
        make_demo_dataset(Path(temp) / "release", args.num_images, seed=0)
        root = Path(temp) / "pack"
        packing.pack(Path(temp) / "release", root, image_size=args.size, progress=False)
        maker = CelebAMaskHQ(root, "all", batch_size=args.batch_size, image_size=args.size,
                             augment=True, drop_remainder=True).maker  # fmt: skip
        model = near_free_model(args.size)
        consume(model, InMemory(CelebAMaskHQ(root, "all", batch_size=args.batch_size,
                                             image_size=args.size)))  # traced before timing  # fmt: skip
        common = (args.workers, args.batches)
        ours = (root, args.size, args.batch_size)
        loaders = {
            "ours, threads": lambda: Ours(*ours, args.workers, "threads", args.batches),
            "ours, processes": lambda: Ours(*ours, args.workers, "processes", args.batches),
            "concurrent.futures processes, pickled results": lambda: PickledProcesses(
                maker, *common
            ),
        }
        if keras.backend.backend() == "tensorflow":
            loaders["tf.data map(numpy_function)"] = lambda: TFData(maker, *common)
        try:
            import grain.python  # noqa: F401

            loaders["grain DataLoader"] = lambda: Grain(maker, *common)
        except ImportError:
            print("grain is not installed: its row is left out (pip install grain)")
        print(f"{args.num_images} packed images at {args.size}, batch {args.batch_size}, "
              f"{args.workers} workers, {args.batches} batches a repeat, best of {args.repeats}, "
              f"Keras on {keras.backend.backend()}")  # fmt: skip
        print("| loader | samples/s | samples per CPU-s | start (s) |\n|---|---|---|---|")
        for name, start in loaders.items():
            measure(name, start, args.repeats, args.batch_size, model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
