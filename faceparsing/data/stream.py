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
dataset's `batch_maker()` without the GIL's limit.

`fit` reads the stream through `EpochWindow`, one epoch of exactly
`steps_per_epoch` batches at a time: an endless dataset would make Keras run
every epoch in whole executions of `steps_per_execution` steps (10 steps at 4
per execution would train 12), while a finite epoch ends with a shorter last
execution on both backends.
"""

import concurrent.futures
import threading

import keras


class TrainingStream(keras.utils.PyDataset):
    """Endless, deterministic batches of a `CelebAMaskHQ` for `model.fit`.

    Args:
        dataset: CelebAMaskHQ. Its `batch(index, epoch)` gives the batches.
        steps_per_epoch: int. Batches per `fit` epoch.
        start_epoch: int. Completed epochs before this `fit` (a resume).
        workers: int. Threads or processes that build batches ahead. Defaults to 1.
        queue_size: int or None. Batches built ahead. Defaults to 2 x workers.
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

    def __getitem__(self, index):
        if self.num_workers == 1 and self.queue_size <= 1:
            return self.build(index)
        with self._lock:
            if self._executor is None:
                self._executor = self._start_workers()
            for ahead in range(index, index + self.queue_size + 1):
                if ahead not in self._pending:
                    self._pending[ahead] = self._submit(ahead)
            future = self._pending.pop(index)
            for stale in [key for key in self._pending if key < index]:
                self._pending.pop(stale).cancel()
        if self.worker_type == "processes":
            return self.dataset.receive(future.result())
        return future.result()

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
        """Stop the worker threads (batches built ahead are dropped)."""
        with self._lock:
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
