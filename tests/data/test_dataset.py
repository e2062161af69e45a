import numpy as np
import pytest
from tiny_celebamask import write_mapping, write_tiny_root

from faceparsing import errors
from faceparsing.classes import NUM_CLASSES
from faceparsing.data import class_weights, layout, release
from faceparsing.data.dataset import CelebAMaskHQ


@pytest.mark.parametrize("target", ["integer", "onehot"])
def test_batches_shapes_ranges_and_last_partial_batch(tiny_root, target):
    dataset = CelebAMaskHQ(tiny_root, "train", batch_size=3, image_size=33, target=target)
    assert len(dataset) == 2 and dataset.num_classes == NUM_CLASSES and dataset.image_size == 33
    x, y = dataset[0]
    assert x.shape == (3, 33, 33, 3) and x.dtype == np.uint8  # compact batches
    assert 0 <= x.min() and x.max() <= 255 and x.max() > 1
    if target == "integer":
        assert y.shape == (3, 33, 33) and y.dtype == np.uint8
    else:
        assert y.shape == (3, 33, 33, NUM_CLASSES) and y.dtype == np.uint8
        np.testing.assert_array_equal(y.sum(-1), 1)
    dataset = CelebAMaskHQ(tiny_root, "all", batch_size=4, image_size=16)
    assert len(dataset) == 2 and dataset[1][0].shape[0] == 2
    with pytest.raises(IndexError):
        dataset[2]


def test_onehot_argmax_equals_integer_target(tiny_root):
    options = dict(split="all", batch_size=6, image_size=21, shuffle=False)
    _, integer = CelebAMaskHQ(tiny_root, target="integer", **options)[0]
    _, onehot = CelebAMaskHQ(tiny_root, target="onehot", **options)[0]
    np.testing.assert_array_equal(onehot.argmax(-1), integer)
    assert set(np.unique(integer)) <= set(range(NUM_CLASSES))


@pytest.mark.parametrize("class_weights", [*class_weights.WEIGHT_SCHEMES, [1.0] * NUM_CLASSES])
def test_dataset_weights_are_fixed_per_class(tiny_root, class_weights):
    dataset = CelebAMaskHQ(
        tiny_root, "val", batch_size=2, image_size=16, class_weights=class_weights
    )
    x, y, w = dataset[0]
    assert w.shape == y.shape and w.dtype == np.float32
    assert np.all(np.isfinite(w)) and w.min() > 0
    if class_weights != "per_image":
        # One weight per class for the whole run, counted over this dataset's ids.
        np.testing.assert_array_equal(w, dataset.class_weight_vector[y])


def test_frequency_weights_average_one_over_the_trained_pixels(tiny_root):
    dataset = CelebAMaskHQ(tiny_root, "all", class_weights="median_frequency", max_weight=4.0)
    counts = class_weights.training_class_counts(tiny_root, dataset.ids)
    vector = dataset.class_weight_vector
    assert vector.max() <= 4.0
    unclipped = class_weights.class_weights_from_counts(counts, "median_frequency")
    assert np.isclose(np.sum(counts * unclipped) / counts.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vector, np.minimum(unclipped, 4.0))


def test_same_seed_and_epoch_give_identical_batches(tiny_root):
    def batches(epoch):
        dataset = CelebAMaskHQ(tiny_root, "all", batch_size=6, image_size=24, augment=True)
        dataset.set_epoch(epoch)
        return dataset[0]

    first, again, later = batches(0), batches(0), batches(1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], later[0])


def test_order_reshuffles_each_epoch(tmp_path):
    write_mapping(tmp_path, {k: k for k in range(40)})
    dataset = CelebAMaskHQ(tmp_path, "all", batch_size=40, image_size=8)
    first = dataset.order(dataset.epoch).copy()
    dataset.on_epoch_end()
    assert dataset.epoch == 1 and not np.array_equal(first, dataset.order(1))
    assert sorted(dataset.order(1)) == list(range(40))
    np.testing.assert_array_equal(dataset.order(0), first)  # a pure function of the epoch


def test_batch_is_a_pure_function_of_epoch_and_index(tiny_root):
    dataset = CelebAMaskHQ(tiny_root, "all", batch_size=2, image_size=16, augment=True)
    wanted = dataset.batch(1, epoch=3)
    dataset.set_epoch(7)
    dataset[0]  # other batches and epochs in between change nothing
    for a, b in zip(wanted, dataset.batch(1, epoch=3), strict=True):
        np.testing.assert_array_equal(a, b)


def test_drop_remainder_leaves_out_the_short_batch(tmp_path):
    write_mapping(tmp_path, {k: k for k in range(10)})
    assert len(CelebAMaskHQ(tmp_path, "all", batch_size=4, image_size=8)) == 3
    dropped = CelebAMaskHQ(tmp_path, "all", batch_size=4, image_size=8, drop_remainder=True)
    assert len(dropped) == 2
    with pytest.raises(ValueError, match="fewer than one batch of 16; lower batch_size"):
        CelebAMaskHQ(tmp_path, "all", batch_size=16, image_size=8, drop_remainder=True)


def _share(root, ids, batch_size, **options):
    return CelebAMaskHQ(root, "train", batch_size=batch_size, image_size=32, ids=ids, **options)


def test_processes_together_train_on_the_single_process_batches(demo_root):
    ids = layout.split_ids(demo_root, "train")[:9]
    single = _share(demo_root, ids, 4, shuffle=True, seed=3, drop_remainder=True)
    shares = [
        _share(demo_root, ids, 2, shuffle=True, seed=3, drop_remainder=True, num_processes=2,
               process_id=process)
        for process in (0, 1)
    ]  # fmt: skip
    assert [len(share) for share in shares] == [2, 2]  # the incomplete third batch is left out
    for epoch in (0, 5):
        for step in range(2):
            images, labels = single.batch(step, epoch)
            parts = [share.batch(step, epoch) for share in shares]
            np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), images)
            np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), labels)


def test_padded_validation_counts_every_image_once_with_one_weight(demo_root):
    ids = layout.split_ids(demo_root, "train")[:5]
    shares = [
        _share(demo_root, ids, 2, shuffle=False, pad=True, num_processes=2, process_id=process)
        for process in (0, 1)
    ]
    assert [len(share) for share in shares] == [2, 2]
    reference, _ = _share(demo_root, ids, 5, shuffle=False)[0]
    counted = []
    for step in range(2):
        for share in shares:
            images, labels, weights = share[step]
            assert images.shape == (2, 32, 32, 3) and weights.shape == labels.shape
            per_image = weights.reshape(2, -1)
            assert np.all(per_image == per_image[:, :1])  # one weight per image
            counted += [image for image, w in zip(images, per_image[:, 0], strict=True) if w > 0]
            assert set(per_image[:, 0]) <= {0.0, np.float32(2 * 4 / 5)}  # steps * batch / images
    np.testing.assert_array_equal(np.stack(counted), reference)


def test_skip_bad_samples(tiny_root):
    release.image_path(tiny_root, 1).write_bytes(b"not a jpeg")
    strict = CelebAMaskHQ(tiny_root, "all", batch_size=6, image_size=8, shuffle=False)
    with pytest.raises(errors.DatasetError, match=r"1\.jpg"):
        strict[0]
    lenient = CelebAMaskHQ(
        tiny_root, "all", batch_size=6, image_size=8, shuffle=False, skip_bad_samples=True
    )
    x, _ = lenient[0]
    assert x.shape[0] == 6
    assert [image_id for image_id, _ in lenient.bad_samples] == [1]


def test_dataset_with_cache_matches_without(tiny_root, tmp_path):
    options = dict(split="all", batch_size=6, image_size=20, shuffle=False)
    plain = CelebAMaskHQ(tiny_root, **options)[0]
    cached = CelebAMaskHQ(
        tiny_root, cache_dir=tmp_path, class_weights="median_frequency", **options
    )
    assert len(list(tmp_path.glob("class_counts_*.json"))) == 1
    np.testing.assert_array_equal(cached[0][1], plain[1])


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    """Six images, batches of 2 with augmentation: 3 batches a pass."""
    root = write_tiny_root(tmp_path_factory.mktemp("six"))
    return dict(root=root, split="all", batch_size=2, image_size=8, drop_remainder=True,
                augment=True)  # fmt: skip


def _ids_of(dataset, epoch, index):
    position, data_pass = dataset._locate(epoch, index)
    start = position * dataset.batch_size
    return [dataset.ids[p] for p in dataset.order(data_pass)[start : start + dataset.batch_size]]


def test_short_epochs_go_on_in_the_same_pass_without_repeating(six):
    dataset = CelebAMaskHQ(**six, steps_per_epoch=1)
    assert len(dataset) == 1 and len(dataset.maker) == 3
    seen = [image_id for epoch in range(3) for image_id in _ids_of(dataset, epoch, 0)]
    assert len(seen) == len(set(seen)) == 6  # one pass over three epochs: no sample twice
    assert dataset._locate(3, 0) == (0, 1)  # then the next pass, reshuffled
    # The maker numbers batches over consecutive passes the same way (what benchmarks use).
    assert [dataset.maker.locate(step) for step in (0, 2, 3, 7)] == [(0, 0), (2, 0), (0, 1), (1, 2)]


def test_a_resumed_run_reads_the_batches_of_an_uninterrupted_one(six):
    with CelebAMaskHQ(**six, workers=2) as straight, CelebAMaskHQ(**six, workers=2) as resumed:
        expected = {}
        for epoch in range(4):
            straight.set_epoch(epoch)
            expected[epoch] = [straight[index] for index in range(len(straight))]
        resumed.set_epoch(3)  # what train.py does after a kill
        for index in range(len(resumed)):
            for a, b in zip(resumed[index], expected[3][index], strict=True):
                np.testing.assert_array_equal(a, b)


def test_workers_give_the_batches_of_one_thread_whatever_the_reading_order(six):
    single = CelebAMaskHQ(**six)
    with CelebAMaskHQ(**six, workers=2) as threaded:
        # fit peeks at 0 and 1, restarts at 0; a shuffled fit reads anywhere.
        for epoch, index in [(0, 0), (0, 1), (0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (1, 1)]:
            single.set_epoch(epoch)
            threaded.set_epoch(epoch)
            for a, b in zip(single[index], threaded[index], strict=True):
                np.testing.assert_array_equal(a, b)


def test_batches_are_built_ahead_only_within_the_epoch_and_in_order(six):
    with CelebAMaskHQ(**six, workers=1) as dataset:
        dataset[0]  # its size sets how many may be built ahead; none yet
        dataset[1]
        assert set(dataset._prefetcher._pending) == {(2, 0)}  # the rest of epoch 0, no more
        dataset.set_epoch(1)
        dataset[0]  # a new epoch: what was ahead in the last one is dropped
        assert set(dataset._prefetcher._pending) == {(1, 1), (2, 1)}
        dataset[2]  # out of order: what was built ahead is dropped, nothing new starts
        assert dataset._prefetcher._pending == {}


def test_fit_reads_its_first_two_batches_once(six):
    dataset = CelebAMaskHQ(**six)
    built, make = [], dataset.maker.make
    dataset.maker.make = lambda index, epoch: built.append(index) or make(index, epoch)
    for index in [0, 1, 0, 1, 2]:  # Keras' shape peek, then the epoch
        dataset[index]
    assert built == [0, 1, 2]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_closed_dataset_refuses_instead_of_starting_new_workers(six, workers):
    dataset = CelebAMaskHQ(**six, workers=workers)
    with dataset:
        dataset[0]
    if workers:
        with pytest.raises(RuntimeError, match="asked after the dataset was closed"):
            dataset[1]


def test_use_multiprocessing_is_refused_in_one_line(six):
    with pytest.raises(errors.ConfigError, match="worker_type='processes'"):
        CelebAMaskHQ(**six, use_multiprocessing=True)


def test_a_dataset_closed_before_any_read_refuses_too(six):
    dataset = CelebAMaskHQ(**six, workers=2)
    dataset.close()
    with pytest.raises(RuntimeError, match="asked after the dataset was closed"):
        dataset[0]
    assert dataset._prefetcher is None  # no pool of workers was started
