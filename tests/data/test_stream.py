import numpy as np
import pytest
from tiny_celebamask import write_tiny_root

from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.data.stream import TrainingStream


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = write_tiny_root(tmp_path_factory.mktemp("stream"))
    return CelebAMaskHQ(root, "all", batch_size=2, image_size=8, drop_remainder=True, augment=True)


def _ids_of(stream, index):
    epoch, position = stream.locate(index)
    return [
        stream.dataset.ids[p] for p in stream.dataset.order(epoch)[2 * position : 2 * position + 2]
    ]


def test_short_epochs_go_on_in_the_same_pass_without_repeating(dataset):
    stream = TrainingStream(dataset, steps_per_epoch=1)
    per_pass = len(dataset)
    seen = [image_id for index in range(per_pass) for image_id in _ids_of(stream, index)]
    assert len(seen) == len(set(seen)) == 2 * per_pass  # one pass: no sample twice
    assert stream.locate(per_pass) == (1, 0)  # then the next pass, reshuffled


def test_a_resumed_stream_serves_the_batches_the_straight_one_would(dataset):
    straight = TrainingStream(dataset, steps_per_epoch=2, workers=2)
    resumed = TrainingStream(dataset, steps_per_epoch=2, start_epoch=3, workers=2)
    with straight, resumed:
        for index in range(3):
            for a, b in zip(straight[6 + index], resumed[index], strict=True):
                np.testing.assert_array_equal(a, b)


def test_worker_threads_give_the_batches_of_one_thread_in_order(dataset):
    single = TrainingStream(dataset, steps_per_epoch=3, workers=1, queue_size=1)
    threaded = TrainingStream(dataset, steps_per_epoch=3, workers=2)
    with threaded:
        order = [0, 1, 2, 3, 0, 1, 2, 7, 8]  # fit restarts at 0 after its first peek
        for index in order:
            for a, b in zip(single[index], threaded[index], strict=True):
                np.testing.assert_array_equal(a, b)
    assert threaded.num_batches is None


@pytest.mark.parametrize("workers", [1, 2])
def test_a_closed_stream_refuses_instead_of_starting_new_threads(dataset, workers):
    stream = TrainingStream(dataset, steps_per_epoch=2, workers=workers)
    with stream:
        stream[0]
    with pytest.raises(RuntimeError, match="batch 1 asked of a TrainingStream after close"):
        stream[1]
    assert stream._executor is None


def test_batches_built_ahead_stay_within_the_memory_budget(dataset, monkeypatch):
    from faceparsing.data import stream as stream_module

    batch_bytes = sum(array.nbytes for array in dataset.batch(0, 0))
    monkeypatch.setattr(stream_module, "PREFETCH_BYTES", 3 * batch_bytes)
    stream = TrainingStream(dataset, steps_per_epoch=2, workers=8)
    assert stream.queue_size == 16
    with stream:
        stream[0]
        assert stream.queue_size == 3
        stream[1]
        assert len(stream._pending) <= 3
