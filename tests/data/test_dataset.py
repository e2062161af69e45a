import numpy as np
import pytest
from tiny_celebamask import write_mapping, write_tiny_root

from faceparsing import errors
from faceparsing.classes import NUM_CLASSES
from faceparsing.data import class_weights, layout
from faceparsing.data.dataset import CelebAMaskHQ


@pytest.fixture
def tiny_root(tmp_path):
    """Six images: ids 0-3 train, 4 val, 5 test."""
    return write_tiny_root(tmp_path)


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
        np.testing.assert_array_equal(w, dataset._class_weight_vector[y])


def test_frequency_weights_average_one_over_the_trained_pixels(tiny_root):
    dataset = CelebAMaskHQ(tiny_root, "all", class_weights="median_frequency", max_weight=4.0)
    counts = class_weights.training_class_counts(tiny_root, dataset.ids)
    vector = dataset._class_weight_vector
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


def test_shard_splits_ids(tiny_root):
    dataset = CelebAMaskHQ(tiny_root, "all", batch_size=2, image_size=8)
    shards = [dataset.shard(2, index) for index in range(2)]
    assert sorted(shards[0].ids + shards[1].ids) == dataset.ids
    assert not set(shards[0].ids) & set(shards[1].ids)


def test_skip_bad_samples(tiny_root):
    layout.image_path(tiny_root, 1).write_bytes(b"not a jpeg")
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
