import os
import pickle

import numpy as np
import pytest

from faceparsing.data import packing
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.data.stream import TrainingStream
from faceparsing.data.workers import ProcessPool, WorkerError, choose_worker_type, worker_count
from faceparsing.errors import DatasetError, UserError

HEAVY = "sorted(m for m in __import__('sys').modules if m.split('.')[0] in ('tensorflow', 'jax', 'keras'))"  # noqa: E501


@pytest.fixture(scope="module")
def pack_root(tmp_path_factory):
    from faceparsing.data.synthetic import make_demo_dataset

    folder = tmp_path_factory.mktemp("workers")
    make_demo_dataset(folder / "release", 8, seed=1)
    packing.pack(folder / "release", folder / "pack", image_size=64, workers=1, progress=False)
    return folder / "pack"


def _dataset(root):
    return CelebAMaskHQ(
        root, "all", batch_size=2, image_size=32, augment=True, seed=5, drop_remainder=True,
        class_weights="median_frequency",
    )  # fmt: skip


@pytest.mark.slow
def test_worker_processes_build_the_batches_threads_build(pack_root):
    dataset = _dataset(pack_root)
    batches = {}
    for worker_type in ("threads", "processes"):
        stream = TrainingStream(dataset, steps_per_epoch=3, workers=2, worker_type=worker_type)
        with stream:
            batches[worker_type] = [stream[index] for index in range(6)]  # two passes
    for threads, processes in zip(batches["threads"], batches["processes"], strict=True):
        assert len(threads) == len(processes) == 3
        assert all(np.array_equal(a, b) for a, b in zip(threads, processes, strict=True))


@pytest.mark.slow
def test_a_worker_builds_batches_without_importing_keras_tensorflow_or_jax(pack_root):
    maker = _dataset(pack_root).batch_maker()
    build = f"__import__('pickle').loads({pickle.dumps(maker)!r})((0, 0))[0][0].shape"
    with ProcessPool(eval, 1) as pool:
        assert pool.submit(build).result() == (2, 32, 32, 3)
        assert pool.submit(HEAVY).result() == []


@pytest.mark.slow
def test_worker_errors_come_back_and_a_dead_worker_is_named():
    with ProcessPool(eval, 1) as pool:
        with pytest.raises(ZeroDivisionError):
            pool.submit("1 / 0").result()
        assert pool.submit("6 * 7").result() == 42  # the worker lives on
        pid = pool.pids[0]
        with pytest.raises(WorkerError, match=str(pid)):
            pool.submit("__import__('os')._exit(3)").result()
        with pytest.raises(WorkerError):
            pool.submit("1").result()


@pytest.mark.slow
def test_a_dataset_error_in_a_worker_keeps_its_type(pack_root, tmp_path):
    maker = _dataset(pack_root).batch_maker()
    maker.ids = [999, 998]  # not packed
    with ProcessPool(maker, 1) as pool:
        with pytest.raises(DatasetError, match="99[89] is not in the packed folder"):
            pool.submit((0, 0)).result()


def test_auto_uses_processes_for_packed_data_from_four_workers(pack_root):
    from tiny_celebamask import write_tiny_root

    dataset = _dataset(pack_root)
    assert choose_worker_type("auto", 4, dataset) == "processes"
    assert choose_worker_type("auto", 16, dataset) == "processes"
    # On 2 cores threads were faster (benchmarks/RESULTS.md).
    assert choose_worker_type("auto", 2, dataset) == "threads"
    assert choose_worker_type("auto", 1, dataset) == "threads"
    assert choose_worker_type("threads", 4, dataset) == "threads"
    release = CelebAMaskHQ(write_tiny_root(pack_root.parent / "tiny"), "all", image_size=8)
    assert choose_worker_type("auto", 4, release) == "threads"
    assert choose_worker_type("processes", 4, release) == "processes"
    with pytest.raises(UserError, match="threads"):
        choose_worker_type("processes", 2, object())


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
