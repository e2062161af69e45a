"""The training stream: what `fit` reads, batch after batch, for the whole run.

`fit` asks an endless `TrainingStream` for batches 0, 1, 2, ... in order; batch
`i` is global batch `g = start_epoch * steps_per_epoch + i` of the run, which
is batch `g % len(dataset)` of pass `g // len(dataset)` over the dataset. So a
batch is a pure function of its number and the run's seed: the same whichever
thread builds it, whether `fit` runs all epochs or resumes after epoch
`start_epoch`, and whatever `steps_per_epoch` is (a short epoch goes on in the
same pass where the last one stopped, with no sample skipped or repeated).
Nothing depends on when Keras calls `on_epoch_end` or on its shuffling, which
`fit` must leave off (`shuffle=False`).

Workers build the next `queue_size` batches ahead of the one asked for: threads,
or processes (`faceparsing.data.workers`) that build the same batches from the
dataset's `batch_maker()` without the GIL's limit. Fewer are built ahead when
that many would hold more than `PREFETCH_BYTES` of host memory.

`fit` reads the stream through `EpochWindow`, one epoch of exactly
`steps_per_epoch` batches at a time: an endless dataset would make Keras run
every epoch in whole executions of `steps_per_execution` steps (10 steps at 4
per execution would train 12), while a finite epoch ends with a shorter last
execution on both backends.
"""

import concurrent.futures
import threading

import keras

from faceparsing.errors import record_batch_errors

# Host memory that batches built ahead may hold: 2 x 64 threads of 512 px
# batches of 32 would hold 6 GB; this keeps the depth sane on many-core hosts.
PREFETCH_BYTES = 1 << 30


class TrainingStream(keras.utils.PyDataset):
    """Endless, deterministic batches of a `CelebAMaskHQ` for `model.fit`.

    Args:
        dataset: CelebAMaskHQ. Its `batch(index, epoch)` gives the batches.
        steps_per_epoch: int. Batches per `fit` epoch.
        start_epoch: int. Completed epochs before this `fit` (a resume).
        workers: int. Threads or processes that build batches ahead. Defaults to 1.
        queue_size: int or None. Batches built ahead. Defaults to 2 x workers,
            capped so that they hold at most `PREFETCH_BYTES`.
        worker_type: str. "threads" or "processes" (the dataset must have
            `batch_maker()`). Defaults to "threads".
    """

    def __init__(
        self, dataset, steps_per_epoch, start_epoch=0, workers=1, queue_size=None,
        worker_type="threads",
    ):  # fmt: skip
        # Keras' own enqueuer stays off (workers=1): the stream prefetches in order itself.
        super().__init__(workers=1, use_multiprocessing=False)
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
        self.dataset = dataset
        self.steps_per_epoch = int(steps_per_epoch)
        self.start_epoch = int(start_epoch)
        self.num_workers = max(1, int(workers))
        self.queue_size = queue_size or 2 * self.num_workers
        if worker_type not in ("threads", "processes"):
            raise ValueError(f"worker_type must be threads or processes, got {worker_type!r}")
        self.worker_type = worker_type
        self._pending = {}
        self._lock = threading.Lock()
        self._executor = None
        self._closed = False
        self._batch_measured = False

    @property
    def num_batches(self):
        return None  # endless: fit's steps_per_epoch delimits the epochs

    def locate(self, index):
        """(pass, batch index in the pass) of stream batch `index`."""
        step = self.start_epoch * self.steps_per_epoch + int(index)
        return divmod(step, len(self.dataset))

    def build(self, index):
        """Stream batch `index`, built in the calling thread."""
        epoch, position = self.locate(index)
        return self.dataset.batch(position, epoch)

    @record_batch_errors  # Keras reads it through tf.data, which wraps errors
    def __getitem__(self, index):
        if self.num_workers == 1 and self.queue_size <= 1:
            self._refuse_if_closed(index)
            return self.build(index)
        with self._lock:
            self._refuse_if_closed(index)
            if self._executor is None:
                self._executor = self._start_workers()
            # Nothing ahead until the first batch shows how much memory one holds.
            depth = self.queue_size if self._batch_measured else 0
            for ahead in range(index, index + depth + 1):
                if ahead not in self._pending:
                    self._pending[ahead] = self._submit(ahead)
            future = self._pending.pop(index)
            for stale in [key for key in self._pending if key < index]:
                self._pending.pop(stale).cancel()
        if self.worker_type == "processes":
            batch = self.dataset.receive(future.result())
        else:
            batch = future.result()
        if not self._batch_measured:
            self.queue_size = prefetch_depth(self.queue_size, batch)
            self._batch_measured = True
        return batch

    def _refuse_if_closed(self, index):
        # tf.data's generator thread may still ask once `fit` has returned: a
        # new pool of workers then would never be shut down.
        if self._closed:
            raise RuntimeError(f"batch {index} asked of a TrainingStream after close()")

    def _start_workers(self):
        if self.worker_type == "processes":
            from faceparsing.data.workers import ProcessPool

            return ProcessPool(self.dataset.batch_maker(), self.num_workers, "faceparsing-batches")
        return concurrent.futures.ThreadPoolExecutor(
            self.num_workers, thread_name_prefix="faceparsing-batches"
        )

    def _submit(self, index):
        if self.worker_type == "processes":
            epoch, position = self.locate(index)
            return self._executor.submit((position, epoch))
        return self._executor.submit(self.build, index)

    def close(self):
        """Stop the worker threads (batches built ahead are dropped); later reads raise."""
        with self._lock:
            self._closed = True
            for future in self._pending.values():
                future.cancel()
            self._pending.clear()
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def prefetch_depth(queue_size, batch, budget=None):
    """`queue_size`, lowered so that that many batches like `batch` fit in `budget` bytes."""
    budget = PREFETCH_BYTES if budget is None else budget
    batch_bytes = sum(getattr(array, "nbytes", 0) for array in batch)
    if not batch_bytes:
        return queue_size
    return max(1, min(queue_size, budget // batch_bytes))


class EpochWindow(keras.utils.PyDataset):
    """Epoch `epoch` of a `TrainingStream`: the finite dataset of `steps_per_epoch`
    batches that `model.fit` reads (with its own `steps_per_epoch` left unset).

    Keras then ends every epoch after exactly `steps_per_epoch` steps, whatever
    `steps_per_execution` is: the last execution of an epoch is shorter (JAX
    stops at the data's end, TensorFlow's loop at its empty optional). Keras
    starts each epoch's reading after the callbacks' `on_epoch_begin`, where
    `FollowEpochs` moves the window, so batch `i` of epoch `e` is stream batch
    `(e - stream.start_epoch) * steps_per_epoch + i` for any kill and rerun.
    """

    def __init__(self, stream):
        super().__init__(workers=1, use_multiprocessing=False)
        self.stream = stream
        self.epoch = stream.start_epoch

    @property
    def num_batches(self):
        return self.stream.steps_per_epoch

    def __len__(self):
        return self.stream.steps_per_epoch

    def __getitem__(self, index):
        if not 0 <= index < self.stream.steps_per_epoch:
            raise IndexError(f"batch {index} outside an epoch of {self.stream.steps_per_epoch}")
        offset = (self.epoch - self.stream.start_epoch) * self.stream.steps_per_epoch
        return self.stream[offset + index]


class FollowEpochs(keras.callbacks.Callback):
    """Moves an `EpochWindow` to the epoch that `fit` begins (Keras' epoch number
    counts from the run's start, `initial_epoch` included)."""

    def __init__(self, window):
        super().__init__()
        self.window = window

    def on_epoch_begin(self, epoch, logs=None):
        self.window.epoch = epoch
