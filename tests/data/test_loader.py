"""loader: one pool for threads and processes, batches built ahead, worker counts."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from faceparsing.data import loader, packing
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.data.loader import Pool, WorkerError, choose_worker_type, worker_count
from faceparsing.errors import DatasetError

HEAVY = "sorted(m for m in __import__('sys').modules if m.split('.')[0] in ('tensorflow', 'jax', 'keras'))"  # noqa: E501


@pytest.fixture(scope="module")
def pack_root(tmp_path_factory):
    from faceparsing.data.synthetic import make_demo_dataset

    folder = tmp_path_factory.mktemp("loader")
    make_demo_dataset(folder / "release", 8, seed=1)
    packing.pack(folder / "release", folder / "pack", image_size=64, workers=1, progress=False)
    return folder / "pack"


def _dataset(root, **options):
    return CelebAMaskHQ(
        root, "all", batch_size=2, image_size=32, augment=True, seed=5, drop_remainder=True,
        class_weights="median_frequency", **options,
    )  # fmt: skip


def test_worker_processes_build_the_batches_one_thread_builds(pack_root):
    reference = _dataset(pack_root)
    with _dataset(pack_root, workers=2, worker_type="processes", steps_per_epoch=3) as dataset:
        for epoch in (0, 1):  # two epochs of 3 batches: the second pass starts in epoch 0
            dataset.set_epoch(epoch)
            for index in range(3):
                built = dataset[index]
                position, data_pass = dataset._locate(epoch, index)
                expected = reference.batch(position, data_pass)
                assert len(built) == 3
                assert all(np.array_equal(a, b) for a, b in zip(built, expected, strict=True))


def test_a_worker_process_errors_keep_their_type_and_a_dead_worker_is_reported():
    with Pool(eval, 1, "processes") as pool:
        with pytest.raises(ZeroDivisionError):
            pool.result(pool.submit("1 / 0"))
        assert pool.result(pool.submit("6 * 7")) == 42  # the worker lives on
        raise_dataset_error = "(_ for _ in ()).throw(__import__('faceparsing.errors').errors.DatasetError('bad file'))"
        with pytest.raises(DatasetError, match="bad file"):  # a one-line user error stays one
            pool.result(pool.submit(raise_dataset_error))
        with pytest.raises(WorkerError, match="worker process stopped"):
            pool.result(pool.submit("__import__('os')._exit(3)"))


def test_large_arrays_come_back_through_shared_memory_and_leave_nothing_behind():
    pool = Pool(eval, 1, "processes")
    folder = pool._shared_dir
    try:
        value = pool.result(pool.submit("(__import__('numpy').arange(100_000), 'small', [1])"))
        assert np.array_equal(value[0], np.arange(100_000)) and value[1:] == ("small", [1])
        value[0][0] = -1  # an ordinary, writable array
        assert folder is None or os.listdir(folder) == []  # mapped, then deleted
    finally:
        pool.close()
    assert folder is None or not os.path.exists(folder)


def _alive(pid):
    """A process that exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_processes_exit_when_their_parent_is_killed(repo, tmp_path):
    # kill -9 of a training run: its workers must not wait forever on the executor's queue
    # (holding memory, the pool's shared folder and the pipes of whoever ran it).
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, signal\n"
        "from faceparsing.data.loader import Pool\n"
        "if __name__ == '__main__':\n"
        "    pool = Pool(eval, 2, 'processes')\n"
        "    pids = {pool.result(pool.submit('__import__(\"os\").getpid()')) for _ in range(8)}\n"
        "    print(pool._shared_dir, *pids, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    # The workers inherit the output pipe: `run` returns once they have all exited.
    result = subprocess.run(
        [sys.executable, str(script)], cwd=repo, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == -9, result.stderr[-2000:]
    folder, *pids = result.stdout.split()
    deadline = time.monotonic() + 10
    while any(_alive(int(pid)) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(int(pid)) for pid in pids)
    assert folder == "None" or not os.path.exists(folder)


@pytest.mark.slow
def test_workers_of_a_keras_script_start_without_keras_tensorflow_or_jax(repo, tmp_path):
    # A script importing Keras at the top, as train.py does: its workers must not run it.
    script = tmp_path / "parent.py"
    script.write_text(
        "import keras\n"
        "from faceparsing.data.loader import Pool\n"
        "if __name__ == '__main__':\n"
        "    with Pool(eval, 2, 'processes') as pool:\n"
        f"        print(pool.result(pool.submit({HEAVY!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], cwd=repo, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_threads_and_processes_share_one_interface():
    for kind in ("threads", "processes"):
        with Pool(abs, 2, kind) as pool:
            assert list(pool.map([-3, 2, -1])) == [3, 2, 1]
            assert pool.result(pool.submit(-5)) == 5
    with pytest.raises(ValueError, match="threads or processes"):
        Pool(abs, 1, "fork")


def test_auto_uses_processes_from_two_workers():
    # Through fit on 2 cores, processes fed more than threads (docs/performance.md).
    assert choose_worker_type("auto", 2) == "processes"
    assert choose_worker_type("auto", 16) == "processes"
    assert choose_worker_type("auto", 1) == "threads"
    assert choose_worker_type("threads", 2) == "threads"
    assert choose_worker_type("processes", 1) == "processes"
    with pytest.raises(ValueError, match="worker_type"):
        choose_worker_type("fork", 2)


def test_prefetch_depth_stays_within_the_memory_budget():
    batch = (np.zeros(1000, np.uint8), np.zeros(1000, np.uint8))
    assert loader.prefetch_depth(16, (batch, []), budget=6000) == 3
    assert loader.prefetch_depth(2, (batch, []), budget=6000) == 2
    assert loader.prefetch_depth(16, (batch, []), budget=100) == 1


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"cpu.max": "300000 100000\n"}, 3),  # cgroup v2, 3 CPUs
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: 2 threads keep them busy
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2),  # v1
        ({"cpu.max": "max 100000\n"}, None),  # no limit: the affinity mask
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),  # no cgroup files (not Linux, or not mounted)
    ],
)
def test_workers_auto_respects_the_cgroup_cpu_quota(files, expected, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(128)), raising=False)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert worker_count("auto", cgroup_root=tmp_path) == (expected or 128)
    assert worker_count("5", cgroup_root=tmp_path) == 5  # an explicit count is kept
