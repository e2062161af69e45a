"""Worker processes for the CPU-bound data work, started light and never forked.

Threads stop scaling where Python holds the GIL (about a fifth of a sample's
CPU time), so batches can also be built in separate processes. A process is
started fresh (`python -m faceparsing.data.workers`, never `fork`: a fork of a
process that runs JAX or TensorFlow threads can deadlock) and imports only what
its task needs: NumPy, OpenCV and the data modules, no Keras, TensorFlow or JAX.
It also never re-runs the parent's main script (what `multiprocessing`'s spawn
does), so a `train.py` parent does not make each worker import Keras.

A worker receives a pickled *task* (any callable) once, then requests; it
returns `task(request)` for each, or the exception it raised. Replies travel
pickled over the worker's stdout pipe, except large arrays: those are written
to one file in shared memory (`/dev/shm`) that the parent maps and deletes, so
the parent spends no CPU copying a batch through the pipe (measured: ~19 ms of
the parent's CPU for a 16 MB batch through the pipe).

```python
with ProcessPool(task, num_workers=2) as pool:
    futures = [pool.submit(request) for request in requests]
    results = [future.result() for future in futures]
```

How many workers a config's `workers` means (`worker_count`: "auto" counts the CPUs this
process may use, a cgroup quota included) and of which kind (`choose_worker_type`) are
decided here too.
"""

import concurrent.futures
import itertools
import math
import mmap
import os
import pickle
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

import faceparsing
from faceparsing.errors import UserError

# How batches are built: "auto" picks processes for a packed folder with at least
# PROCESS_MIN_WORKERS workers, threads otherwise.
WORKER_TYPES = ("auto", "threads", "processes")
# On 2 idle cores (benchmarks/RESULTS.md) packed batches scale on threads as well as on
# processes (1.90x and 2.01x from 1 to 2 workers) and threads cost less CPU a sample
# (336 against 260 samples/s with 2 workers): a process writes each batch to shared memory.
# Threads stop scaling where the GIL-held part of a sample (about a sixth) dominates, from a
# few cores on, where processes keep scaling.
PROCESS_MIN_WORKERS = 4


def worker_count(workers, cgroup_root="/sys/fs/cgroup"):
    """How many workers `workers` asks for: "auto" is the number of CPUs this process may use."""
    if workers == "auto":
        return usable_cpus(cgroup_root)
    return int(workers)


def usable_cpus(cgroup_root="/sys/fs/cgroup"):
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota.

    A container limited to 4 CPUs on a 128-core host sees all 128 cores in its
    affinity mask; only the quota (`docker --cpus`, Kubernetes limits) says 4.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(Path(cgroup_root))
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def cgroup_cpu_quota(root):
    """CPUs per period that the cgroup at `root` allows (a float), or None without a limit.

    Reads cgroup v2's `cpu.max` ("400000 100000" or "max 100000"), else cgroup
    v1's `cpu.cfs_quota_us` / `cpu.cfs_period_us` (quota -1 = no limit).
    """
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for folder in (root / "cpu", root / "cpu,cpuacct", root):
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota <= 0 or period <= 0 else quota / period
    return None


def choose_worker_type(worker_type, workers, dataset):
    """ "threads" or "processes" for the config's `worker_type` and this dataset.

    Processes need the dataset's `batch_maker()` (a `CelebAMaskHQ`; the
    multi-host wrapper uses threads). "auto" leaves a release folder on threads,
    where the label cache's file checks and the 1024x1024 decodes keep the
    measured behaviour of the demo, and uses processes for packed data with
    `PROCESS_MIN_WORKERS` or more workers.
    """
    if worker_type not in WORKER_TYPES:
        raise ValueError(f"worker_type must be one of {WORKER_TYPES}, got {worker_type!r}")
    has_maker = hasattr(dataset, "batch_maker")
    if worker_type == "processes" and not has_maker:
        raise UserError(
            f"worker_type processes: {type(dataset).__name__} cannot build batches in worker "
            "processes; use worker_type threads"
        )
    if worker_type == "auto":
        packed = getattr(dataset, "is_packed", False)
        use_processes = packed and has_maker and workers >= PROCESS_MIN_WORKERS
        return "processes" if use_processes else "threads"
    return worker_type


class WorkerError(RuntimeError):
    """A worker process died or could not be started."""


class ProcessPool:
    """A fixed set of worker processes serving one task, fed in submission order.

    Args:
        task: callable, picklable. Called in a worker as `task(request)`.
        num_workers: int. Worker processes.
        name: str. Names the feeding threads (for debuggers and logs).
    """

    def __init__(self, task, num_workers, name="faceparsing-worker"):
        if num_workers < 1:
            raise ValueError(f"num_workers must be positive, got {num_workers}")
        task_bytes = pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
        self._requests = queue.Queue()
        self._shared_dir = _shared_memory_dir()
        self._processes = [_start_worker(task_bytes, self._shared_dir) for _ in range(num_workers)]
        self._threads = [
            threading.Thread(target=self._feed, args=(process,), name=f"{name}-{i}", daemon=True)
            for i, process in enumerate(self._processes)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def pids(self):
        return [process.pid for process in self._processes]

    def cpu_seconds(self):
        """CPU seconds the live workers have used so far (Linux; NaN elsewhere)."""
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        total = 0.0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                return float("nan")
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        return total

    def submit(self, request):
        """A `concurrent.futures.Future` of `task(request)` (it may be cancelled while queued)."""
        future = concurrent.futures.Future()
        self._requests.put((future, request))
        return future

    def map(self, requests, window=None):
        """`task(request)` for each request, in order, at most `window` in flight."""
        window = window or 4 * len(self._processes)
        pending = []
        for request in requests:
            pending.append(self.submit(request))
            if len(pending) >= window:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()

    def close(self):
        """Stop the workers; requests still queued are cancelled."""
        while True:
            try:
                future, _ = self._requests.get_nowait()
            except queue.Empty:
                break
            future.cancel()
        for _ in self._threads:
            self._requests.put(None)
        for thread in self._threads:
            thread.join()
        for process in self._processes:
            process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()
        if self._shared_dir:
            shutil.rmtree(self._shared_dir, ignore_errors=True)

    def shutdown(self, wait=True, cancel_futures=True):
        """`close()`, with `concurrent.futures.Executor.shutdown`'s signature."""
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _feed(self, process):
        # One thread per worker: it blocks on the pipe (GIL released) while
        # the worker builds, so the parent's Python time stays small.
        broken = None
        while True:
            item = self._requests.get()
            if item is None:
                return
            future, request = item
            if not future.set_running_or_notify_cancel():
                continue
            if broken is None:
                try:
                    ok, value = _call(process, request)
                except Exception as error:  # the pipe is out of step: no more requests
                    broken = WorkerError(
                        f"data worker process {process.pid} stopped ({error!r}, exit status "
                        f"{process.poll()}); its error is printed above"
                    )
            if broken is not None:
                future.set_exception(broken)
            elif ok:
                future.set_result(value)
            else:
                future.set_exception(value)


def _shared_memory_dir():
    """A private folder in shared memory for this pool's replies, or None (then the pipe)."""
    if not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK):
        return None
    return tempfile.mkdtemp(prefix="faceparsing-workers-", dir="/dev/shm")


def _start_worker(task_bytes, shared_dir):
    # The worker imports the same `faceparsing` as this process (a checkout, a worktree,
    # an editable install): the folder holding the package goes first on its path.
    package_parent = str(Path(faceparsing.__file__).resolve().parents[1])
    inherited = os.environ.get("PYTHONPATH", "")
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_parent, inherited])),
    }
    environment[_SHARED_DIR_VARIABLE] = shared_dir or ""
    process = subprocess.Popen(
        [sys.executable, "-m", "faceparsing.data.workers"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=environment,
    )
    process.stdin.write(task_bytes)
    process.stdin.flush()
    return process


def _call(process, request):
    pickle.dump(request, process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
    process.stdin.flush()
    ok, value = pickle.load(process.stdout)
    return ok, _unshare(value) if isinstance(value, _Shared) else value


_SHARED_DIR_VARIABLE = "FACEPARSING_WORKER_SHARED_DIR"
_SHARE_MIN_BYTES = 1 << 16  # smaller arrays go through the pipe
_ALIGN = 64


class _Shared:
    """A reply whose large arrays lie in one shared-memory file: `shell` holds
    `_ArrayRef`s where they were; `specs` gives each one's (dtype, shape, offset)."""

    def __init__(self, path, specs, shell):
        self.path, self.specs, self.shell = path, specs, shell


class _ArrayRef:
    def __init__(self, index):
        self.index = index


def _share(value, directory, name):
    """Worker side: `value` with its large arrays written to `directory/name` (if any)."""
    arrays = []

    def replace(item):
        if isinstance(item, np.ndarray) and item.nbytes >= _SHARE_MIN_BYTES:
            arrays.append(np.ascontiguousarray(item))
            return _ArrayRef(len(arrays) - 1)
        if isinstance(item, (tuple, list)):
            return type(item)(replace(part) for part in item)
        return item

    shell = replace(value)
    if not arrays:
        return value
    path, specs, offset = os.path.join(directory, name), [], 0
    with open(path, "wb") as file:
        for array in arrays:
            file.write(bytes(-offset % _ALIGN))
            offset += -offset % _ALIGN
            specs.append((array.dtype.str, array.shape, offset))
            file.write(memoryview(array).cast("B"))
            offset += array.nbytes
    return _Shared(path, specs, shell)


def _unshare(shared):
    """Parent side: the reply with its arrays mapped from the file, which is deleted."""
    with open(shared.path, "rb") as file:
        # Private, writable pages: the arrays behave as ordinary ones; the file's
        # memory is freed once they are gone.
        memory = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
    os.unlink(shared.path)
    arrays = [
        np.frombuffer(memory, np.dtype(dtype), int(np.prod(shape)), offset).reshape(shape)
        for dtype, shape, offset in shared.specs
    ]

    def restore(item):
        if isinstance(item, _ArrayRef):
            return arrays[item.index]
        if isinstance(item, (tuple, list)):
            return type(item)(restore(part) for part in item)
        return item

    return restore(shared.shell)


def _portable(error):
    # Project errors keep their type (a UserError still prints as one line);
    # anything that cannot be pickled becomes a RuntimeError with its text.
    try:
        pickle.dumps(error)
        return error
    except Exception:
        kind = UserError if isinstance(error, UserError) else RuntimeError
        return kind(f"{type(error).__name__}: {error}")


def serve(requests, replies):
    """The worker's loop: read the task, then answer requests until the pipe closes."""
    task = pickle.load(requests)
    shared_dir = os.environ.get(_SHARED_DIR_VARIABLE)
    for count in itertools.count():
        try:
            request = pickle.load(requests)
        except EOFError:
            return
        try:
            reply = (True, task(request))
            if shared_dir:
                reply = (True, _share(reply[1], shared_dir, f"{os.getpid()}-{count}"))
        except Exception as error:
            reply = (False, _portable(error))
        pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()


def _main():
    # Replies own the real stdout; anything the task prints goes to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    try:
        serve(sys.stdin.buffer, replies)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    # Run the imported module, not this `__main__` copy, so replies pickle as
    # `faceparsing.data.workers` objects that the parent can load.
    from faceparsing.data import workers

    workers._main()
