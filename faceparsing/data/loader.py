"""Workers for the data work: one pool for threads or processes, and batches built ahead.

`Pool` runs a task on threads or processes behind one interface; the batch loader, the
pack writer and the synthetic-set writer all use it. Processes are spawned, never forked
(a fork of a process running JAX or TensorFlow threads can deadlock), do not run the
parent's script again (`train.py` would import Keras in each), receive the task once and
hand large arrays back through shared memory, not through the pipe. `Prefetcher` keeps
the next batches building; `worker_count` and `choose_worker_type` read a config.
"""

import collections
import concurrent.futures
import contextlib
import itertools
import math
import mmap
import multiprocessing
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

WORKER_TYPES = ("auto", "threads", "processes")
# "auto" uses processes from this many workers: through `fit` on 2 idle cores, 2 worker
# processes fed 1.13-1.26x what 2 threads did (the part of a sample that holds the GIL,
# and the consumer's own Python, keep threads apart; docs/performance.md).
PROCESS_MIN_WORKERS = 2
# Host memory that batches built ahead may hold (many cores and large batches).
PREFETCH_BYTES = 1 << 30


def worker_count(workers, cgroup_root="/sys/fs/cgroup"):
    """How many workers `workers` asks for: "auto" is the number of CPUs this process may use."""
    return usable_cpus(cgroup_root) if workers == "auto" else int(workers)


def usable_cpus(cgroup_root="/sys/fs/cgroup"):
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (a
    container limited to 4 CPUs on a 128-core host sees 128 cores in its mask)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(Path(cgroup_root))
    return max(1, cores if quota is None else min(cores, math.ceil(quota)))


def cgroup_cpu_quota(root):
    """CPUs per period that the cgroup at `root` allows, or None without a limit
    (cgroup v2's `cpu.max`, else v1's `cpu.cfs_quota_us` / `cpu.cfs_period_us`)."""
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


def choose_worker_type(worker_type, workers):
    """ "threads" or "processes" for a config's `worker_type` ("auto": processes from
    `PROCESS_MIN_WORKERS` workers on, a thread for one worker)."""
    if worker_type not in WORKER_TYPES:
        raise ValueError(f"worker_type must be one of {WORKER_TYPES}, got {worker_type!r}")
    if worker_type == "auto":
        return "processes" if workers >= PROCESS_MIN_WORKERS else "threads"
    return worker_type


class WorkerError(RuntimeError):
    """A worker process died."""


class Pool:
    """`task(request)` on `workers` worker threads or processes (`kind`); for processes
    `task` must pickle: each worker receives it once.

    Example:
    ```python
    with Pool(str.upper, 2, "processes") as pool:
        list(pool.map(["a", "b"]))  # ["A", "B"]
    ```
    """

    def __init__(self, task, workers, kind="threads"):
        if kind not in ("threads", "processes"):
            raise ValueError(f"kind must be threads or processes, got {kind!r}")
        self.kind, self.workers = kind, max(1, int(workers))
        self._shared_dir = None
        if kind == "threads":
            self._call = task
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.workers, thread_name_prefix="faceparsing-data"
            )
            return
        self._call = _call_installed_task
        self._shared_dir = _shared_memory_dir()
        self._executor = concurrent.futures.ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_install_task, initargs=(task, self._shared_dir, os.getpid()),
        )  # fmt: skip
        # The executor starts a worker when a request finds none idle: start them all
        # now, while the parent's script is hidden from them.
        with _main_script_hidden():
            for future in [self._executor.submit(os.getpid) for _ in range(self.workers)]:
                self.result(future)

    def submit(self, request):
        """A `concurrent.futures.Future` of `task(request)`; read it with `result`."""
        return self._executor.submit(self._call, request)

    def result(self, future):
        """The value of a future from `submit`; a worker's exception is raised here."""
        try:
            value = future.result()
        except BrokenProcessPool:
            raise WorkerError(
                "a data worker process stopped (killed, or out of memory); its error, if any, "
                "is printed above"
            ) from None
        return _unshare(value) if isinstance(value, _Shared) else value

    def map(self, requests, window=None):
        """`task(request)` for each request, in order, at most `window` in flight."""
        window = window or 4 * self.workers
        pending = collections.deque()
        for request in requests:
            pending.append(self.submit(request))
            if len(pending) >= window:
                yield self.result(pending.popleft())
        while pending:
            yield self.result(pending.popleft())

    def close(self):
        """Stop the workers; requests not started are cancelled."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._shared_dir:
            shutil.rmtree(self._shared_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class Prefetcher:
    """The results of `pool` for the requests asked, with the next ones built ahead.

    `get(request, upcoming)` returns `task(request)` and keeps the first `depth` of
    `upcoming` building; what was built ahead and is no longer upcoming (an
    out-of-order read) is dropped. The depth is lowered once the first result shows
    how many fit in `PREFETCH_BYTES`.
    """

    def __init__(self, pool, depth):
        self.pool, self.depth = pool, max(1, depth)
        self._pending = {}
        self._lock = threading.Lock()
        self._measured = False
        self._closed = False

    def get(self, request, upcoming=()):
        with self._lock:
            if self._closed:  # tf.data's thread may still ask once fit has returned
                raise RuntimeError(f"batch {request} asked after the dataset was closed")
            future = self._pending.pop(request, None) or self.pool.submit(request)
            wanted = list(upcoming)[: self.depth] if self._measured else []
            for stale in set(self._pending) - set(wanted):
                self._pending.pop(stale).cancel()
            for later in wanted:
                if later not in self._pending:
                    self._pending[later] = self.pool.submit(later)
        value = self.pool.result(future)
        if not self._measured:
            self.depth = prefetch_depth(self.depth, value)
            self._measured = True
        return value

    def close(self):
        with self._lock:
            self._closed = True
            for future in self._pending.values():
                future.cancel()
            self._pending.clear()
        self.pool.close()


def prefetch_depth(depth, value, budget=None):
    """`depth`, lowered so that that many results like `value` fit in `budget` bytes."""
    budget = PREFETCH_BYTES if budget is None else budget
    arrays = value[0] if isinstance(value, tuple) and isinstance(value[0], tuple) else value
    size = sum(getattr(array, "nbytes", 0) for array in arrays)
    return max(1, min(depth, budget // size)) if size else depth


_WORKER = {}
_REPLY_NUMBERS = itertools.count()
_SHARE_MIN_BYTES = 1 << 16  # smaller buffers travel in the pickle


def _install_task(task, shared_dir, parent):
    _WORKER.update(task=task, shared_dir=shared_dir)
    # The parent's pid comes from the parent: it may be gone before this worker starts.
    watch = threading.Thread(target=_exit_with_parent, args=(parent, shared_dir), daemon=True)
    watch.start()


def _exit_with_parent(parent, shared_dir, interval=0.5):
    """A worker whose parent is gone (kill -9) exits and removes the pool's shared folder:
    the executor's queue would keep it waiting forever, holding memory and the pipes of
    whatever started the parent."""
    while os.getppid() == parent:
        time.sleep(interval)
    if shared_dir:
        shutil.rmtree(shared_dir, ignore_errors=True)
    os._exit(0)


def _call_installed_task(request):
    value = _WORKER["task"](request)
    if not _WORKER["shared_dir"]:
        return value
    return _share(
        value, os.path.join(_WORKER["shared_dir"], f"{os.getpid()}-{next(_REPLY_NUMBERS)}")
    )


def _shared_memory_dir():
    """A private folder in shared memory for a pool's replies, or None (then pickles)."""
    if not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK):
        return None
    return tempfile.mkdtemp(prefix="faceparsing-workers-", dir="/dev/shm")


class _Shared:
    """A reply pickled with its large buffers (arrays' data) out of band, in the file `path`
    at `spans` (offset, size)."""

    def __init__(self, path, pickled, spans):
        self.path, self.pickled, self.spans = path, pickled, spans


def _share(value, path):
    """Worker side: `value` pickled, its large buffers written to the file `path`."""
    buffers = []
    keep_in_band = lambda buffer: buffer.raw().nbytes < _SHARE_MIN_BYTES or buffers.append(buffer)  # noqa: E731
    pickled = pickle.dumps(value, protocol=5, buffer_callback=keep_in_band)
    if not buffers:
        return value
    spans, offset = [], 0
    with open(path, "wb") as file:
        for buffer in buffers:
            data, padding = buffer.raw(), -offset % 64  # every array starts aligned
            file.write(bytes(padding))
            spans.append((offset + padding, data.nbytes))
            file.write(data)
            offset += padding + data.nbytes
    return _Shared(path, pickled, spans)


def _unshare(shared):
    """Parent side: the reply, its arrays mapped from the file, which is deleted. The pages
    are private and writable, so the arrays behave as ordinary ones."""
    with open(shared.path, "rb") as file:
        memory = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
    os.unlink(shared.path)
    view = memoryview(memory)
    return pickle.loads(shared.pickled, buffers=[view[o : o + n] for o, n in shared.spans])


@contextlib.contextmanager
def _main_script_hidden():
    """Spawned workers start without running the parent's script again: multiprocessing
    imports the parent's `__main__` in every child (`train.py` would import Keras and
    TensorFlow there), unless it cannot find it."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved_file, saved_spec = main.__dict__.pop("__file__", None), getattr(main, "__spec__", None)
    main.__spec__ = None  # `python -m module` would be imported again by name
    try:
        yield
    finally:
        if saved_file is not None:
            main.__file__ = saved_file
        main.__spec__ = saved_spec
