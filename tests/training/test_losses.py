import keras
import numpy as np
import pytest
from keras import ops

from faceparsing.config import CHOICES
from faceparsing.training import losses

LOSS_NAMES = ["cross_entropy", "focal", "dice_ce", "lovasz", "ohem"]


def _batch(seed=0, num_classes=19, shape=(2, 6, 6)):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=shape).astype("int32")
    logits = rng.normal(scale=3, size=shape + (num_classes,)).astype("float32")
    return labels, logits


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("target", ["integer", "onehot"])
def test_losses_are_finite_and_target_encoding_does_not_matter(name, target):
    labels, logits = _batch()
    y_true = labels if target == "integer" else np.eye(19, dtype="float32")[labels]
    reference = losses.build_loss(name, "integer")(labels, logits)
    value = losses.build_loss(name, target)(y_true, logits)
    assert np.isfinite(float(value))
    assert float(value) == pytest.approx(float(reference), rel=1e-5)


def test_focal_with_gamma_zero_is_cross_entropy():
    labels, logits = _batch(1)
    focal = losses.FocalLoss(gamma=0.0)(labels, logits)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    assert float(focal) == pytest.approx(float(cross_entropy), rel=1e-5)


def test_focal_down_weights_easy_pixels():
    labels = np.zeros((1, 1, 2), "int32")
    logits = np.zeros((1, 1, 2, 19), "float32")
    logits[0, 0, 0, 0] = 10.0  # easy pixel
    logits[0, 0, 1, 0] = 0.5  # hard pixel
    per_pixel = losses.FocalLoss(gamma=2.0, reduction=None)(labels, logits)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)(
        labels, logits
    )
    ratio = ops.convert_to_numpy(per_pixel) / ops.convert_to_numpy(cross_entropy)
    assert ratio[0, 0, 0] < 1e-6 < ratio[0, 0, 1] < 1


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_sample_weights_apply_and_gradients_flow(name):
    import tensorflow as tf

    labels, logits = _batch(2)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, size=labels.shape).astype("float32")
    loss = losses.build_loss(name)
    variable = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = loss(labels, variable, sample_weight=weights)
    gradient = tape.gradient(value, variable).numpy()
    assert np.isfinite(gradient).all() and np.abs(gradient).sum() > 0
    assert float(value) != pytest.approx(float(loss(labels, logits)), rel=1e-6)
    zero_weights = np.zeros_like(weights)
    assert float(loss(labels, logits, sample_weight=zero_weights)) == 0.0


def test_dice_term_rewards_overlap():
    labels = np.zeros((1, 4, 4), "int32")
    labels[0, :2] = 1
    perfect = np.where(np.eye(19, dtype=bool)[labels], 20.0, -20.0).astype("float32")
    wrong = np.where(np.eye(19, dtype=bool)[1 - labels], 20.0, -20.0).astype("float32")
    loss = losses.DiceCrossEntropyLoss()
    assert float(loss(labels, perfect)) < 0.01 < float(loss(labels, wrong))


def test_losses_serialise():
    for loss in (
        losses.FocalLoss(gamma=1.5),
        losses.DiceCrossEntropyLoss(dice_weight=0.5),
        losses.LovaszSoftmaxLoss(num_classes=7),
        losses.OhemCrossEntropyLoss(keep_fraction=0.5, num_classes=7),
    ):
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(clone) is type(loss) and clone.get_config() == loss.get_config()


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError, match="loss must be one of"):
        losses.build_loss("hinge")


def test_every_config_choice_builds_a_loss():
    assert sorted(CHOICES["loss"]) == sorted(LOSS_NAMES)
    for name in CHOICES["loss"]:
        assert isinstance(losses.build_loss(name), keras.losses.Loss)


def _confident_logits(labels, num_classes=19):
    return np.where(np.eye(num_classes, dtype=bool)[labels], 20.0, -20.0).astype("float32")


def test_lovasz_is_zero_for_a_perfect_prediction_and_grows_with_errors():
    labels, _ = _batch(3)
    loss = losses.LovaszSoftmaxLoss()
    perfect = float(loss(labels, _confident_logits(labels)))
    shifted = float(loss(labels, _confident_logits((labels + 1) % 19)))
    uniform = float(loss(labels, np.zeros(labels.shape + (19,), "float32")))
    assert perfect == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < uniform < shifted <= 1.0 + 1e-6


def test_lovasz_matches_one_minus_iou_for_a_hard_binary_prediction():
    # With 0/1 probabilities the Lovasz extension equals the Jaccard loss itself.
    labels = np.zeros((1, 4, 4), "int32")
    labels[0, :2] = 1  # 8 pixels of class 1
    predicted = labels.copy()
    predicted[0, 2, :2] = 1  # 2 false positives for class 1, 2 false negatives for class 0
    value = float(losses.LovaszSoftmaxLoss()(labels, _confident_logits(predicted)))
    jaccard_loss_class_0 = 1 - 6 / 8
    jaccard_loss_class_1 = 1 - 8 / 10
    assert value == pytest.approx((jaccard_loss_class_0 + jaccard_loss_class_1) / 2, abs=1e-5)


@pytest.mark.parametrize("name", ["cross_entropy", "focal", "dice_ce"])
@pytest.mark.parametrize("scheme", ["median_frequency", "per_image"])
def test_class_weighted_losses_stay_finite_when_classes_are_absent(name, scheme):
    from faceparsing.data import class_weights

    labels = np.zeros((2, 8, 8), np.int32)
    labels[0, :2, :2] = 1  # classes 2..18 absent from the batch; image 1 is background only
    if scheme == "per_image":
        weights = class_weights.per_image_pixel_weights(labels)
    else:
        counts = np.zeros(19)
        counts[:3] = (1000, 10, 1)  # most classes never seen in training either
        weights = class_weights.pixel_weights(
            labels, class_weights.class_weights_from_counts(counts, scheme)
        )
    logits = np.random.default_rng(0).normal(scale=30, size=(2, 8, 8, 19)).astype("float32")
    value = float(losses.build_loss(name)(labels, logits, sample_weight=weights))
    assert np.isfinite(value) and value > 0


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_mixed_bfloat16_step_gives_a_finite_float32_loss(mixed_bfloat16):
    from faceparsing.model import deeplabv3plus

    model = deeplabv3plus.DeepLabV3Plus(backbone="mobilenetv2", weights=None, alpha=0.35,
                                        aspp_filters=8, decoder_filters=8)  # fmt: skip
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=losses.build_loss("focal"), run_eagerly=True
    )
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 19, size=(2, 32, 32)).astype("int32")
    history = model.fit(images, labels, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# OHEM: the hardest quarter of each image's pixels.
def _per_pixel_cross_entropy(labels, logits):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    return ops.convert_to_numpy(loss(labels, logits))


def test_ohem_keeps_the_hardest_pixels_of_each_image_at_their_mean():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 19, size=(2, 8, 8)).astype("int32")
    logits = rng.normal(scale=3, size=(2, 8, 8, 19)).astype("float32")
    loss = losses.OhemCrossEntropyLoss(keep_fraction=0.25)
    per_pixel = ops.convert_to_numpy(losses.OhemCrossEntropyLoss(reduction=None)(labels, logits))
    cross_entropy = _per_pixel_cross_entropy(labels, logits)
    for image in range(2):
        hardest = np.sort(cross_entropy[image].ravel())[::-1][:16]
        assert np.count_nonzero(per_pixel[image]) == 16
        assert per_pixel[image].mean() == pytest.approx(hardest.mean(), rel=1e-5)
    assert float(loss(labels, logits)) == pytest.approx(per_pixel.mean(), rel=1e-5)


def test_ohem_keeping_every_pixel_is_cross_entropy():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 19, size=(2, 5, 7)).astype("int32")
    logits = rng.normal(size=(2, 5, 7, 19)).astype("float32")
    value = float(losses.OhemCrossEntropyLoss(keep_fraction=1.0)(labels, logits))
    assert value == pytest.approx(_per_pixel_cross_entropy(labels, logits).mean(), rel=1e-5)


def test_ohem_is_built_by_name_serialises_and_checks_its_fraction():
    assert isinstance(losses.build_loss("ohem"), losses.OhemCrossEntropyLoss)
    loss = losses.OhemCrossEntropyLoss(keep_fraction=0.5, num_classes=7)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
    with pytest.raises(ValueError, match="keep_fraction"):
        losses.OhemCrossEntropyLoss(keep_fraction=0.0)


def test_ohem_gradients_reach_only_the_kept_pixels_and_weights_apply():
    import tensorflow as tf

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 19, size=(1, 4, 4)).astype("int32")
    logits = tf.Variable(rng.normal(scale=3, size=(1, 4, 4, 19)).astype("float32"))
    loss = losses.OhemCrossEntropyLoss(keep_fraction=0.25)
    with tf.GradientTape() as tape:
        value = loss(labels, logits)
    touched = np.abs(tape.gradient(value, logits).numpy()).sum(axis=-1) > 0
    assert touched.sum() == 4
    weights = np.zeros((1, 4, 4), "float32")
    assert float(loss(labels, logits, sample_weight=weights)) == 0.0
