"""ONNX export: onnxruntime's logits against the Keras model's, names, metadata, the docs' example."""

import re
import shutil
import sys

import numpy as np
import onnxruntime
import pytest
from PIL import Image

from faceparsing.checkpoints import load_checkpoint
from faceparsing.classes import CLASS_NAMES, NUM_CLASSES
from faceparsing.inference import exporting

# The bar for "same model": relative max error and argmax agreement.
MAX_RELATIVE_ERROR = 1e-3
MIN_ARGMAX_AGREEMENT = 0.999


@pytest.fixture(scope="module")
def onnx_file(trained_run, tmp_path_factory):
    """The tiny run's checkpoint exported with free batch, height and width."""
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert exporting.export(trained_run / "best.keras", "onnx", out, dynamic_size=True) == out
    return out


@pytest.fixture(scope="module")
def fixed_onnx_file(trained_run, tmp_path_factory):
    """The default export: the run's training size (32), free batch."""
    out = tmp_path_factory.mktemp("onnx") / "fixed.onnx"
    return exporting.export(trained_run / "best.keras", "onnx", out)


def dilations(proto):
    """The largest dilation of each Conv node of an ONNX graph."""
    return [
        max(attribute.ints)
        for node in proto.graph.node
        if node.op_type == "Conv"
        for attribute in node.attribute
        if attribute.name == "dilations"
    ]


def test_default_export_is_fixed_size_with_dilated_convolutions(
    fixed_onnx_file, onnx_file, keras_model
):
    import onnx

    fixed, free = onnx.load(str(fixed_onnx_file)), onnx.load(str(onnx_file))
    runtime = session(fixed_onnx_file)
    assert runtime.get_inputs()[0].shape == ["batch", 32, 32, 3]
    assert runtime.get_outputs()[0].shape == ["batch", 32, 32, NUM_CLASSES]
    # The dilated convolutions stay ONNX Conv nodes: the tiny model's 3 ASPP
    # branches and its last stage's depthwise convolutions (rate 2).
    assert sum(rate > 1 for rate in dilations(fixed)) >= 3
    assert not [node.name for node in fixed.graph.node if "SpaceToBatch" in node.name]
    # At a free size the converter leaves space-to-batch detours instead.
    assert not any(rate > 1 for rate in dilations(free))
    assert len(fixed.graph.node) < len(free.graph.node)
    images = random_images(2, 32, 32, 3, seed=8)
    agreement = exporting.onnx_agreement(keras_model, fixed_onnx_file, [images])
    assert agreement["relative_max_error"] <= MAX_RELATIVE_ERROR


@pytest.fixture(scope="module")
def keras_model(trained_run):
    return load_checkpoint(trained_run / "best.keras")


def session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def random_images(*shape, seed):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


@pytest.mark.slow
# (2, 48, 40): a size whose space-to-batch padding tf2onnx gets wrong (see inference_twin).
@pytest.mark.parametrize("shape", [(1, 32, 32, 3), (3, 32, 32, 3), (2, 48, 40, 3)])
def test_onnxruntime_logits_match_keras(keras_model, onnx_file, shape):
    images = random_images(*shape, seed=shape[0])
    expected = keras_model.predict_on_batch(images)
    (actual,) = session(onnx_file).run(["logits"], {"images": images})
    assert actual.shape == expected.shape == (*shape[:3], NUM_CLASSES)
    assert np.abs(actual - expected).max() <= MAX_RELATIVE_ERROR * np.abs(expected).max()
    assert (actual.argmax(-1) == expected.argmax(-1)).mean() >= MIN_ARGMAX_AGREEMENT


def test_names_free_axes_and_metadata(onnx_file):
    """The --dynamic_size export: free batch, height and width."""
    runtime = session(onnx_file)
    (image,) = runtime.get_inputs()
    (logits,) = runtime.get_outputs()
    assert (image.name, image.type, image.shape) == (
        "images", "tensor(float)", ["batch", "height", "width", 3]
    )  # fmt: skip
    assert (logits.name, logits.shape) == ("logits", ["batch", "height", "width", NUM_CLASSES])
    metadata = runtime.get_modelmeta().custom_metadata_map
    assert metadata["image_size"] == "32"  # the tiny run's training size
    assert metadata["class_names"].split(",") == list(CLASS_NAMES)


class ReversedClasses:
    """A stand-in model whose logits list the classes in reverse order."""

    def __init__(self, model):
        self.model = model

    def predict_on_batch(self, images):
        return self.model.predict_on_batch(images)[..., ::-1]


def test_agreement_tells_another_model_apart(keras_model, onnx_file):
    batches = [random_images(2, 32, 32, 3, seed=5), random_images(1, 24, 40, 3, seed=6)]
    same = exporting.onnx_agreement(keras_model, onnx_file, batches)
    assert same["relative_max_error"] <= MAX_RELATIVE_ERROR
    assert same["argmax_agreement"] >= MIN_ARGMAX_AGREEMENT
    assert same["pixels"] == 2 * 32 * 32 + 24 * 40
    other = exporting.onnx_agreement(ReversedClasses(keras_model), onnx_file, batches)
    assert other["relative_max_error"] > 0.01 and other["argmax_agreement"] < 0.5


def test_inference_twin_has_stock_dilation_and_the_same_logits(keras_model):
    twin = exporting.inference_twin(keras_model)
    assert keras_model.get_config()["fast_atrous"] and not twin.get_config()["fast_atrous"]
    images = random_images(1, 40, 56, 3, seed=3)
    np.testing.assert_allclose(
        twin.predict_on_batch(images), keras_model.predict_on_batch(images), rtol=1e-4, atol=1e-4
    )


def readme_onnx_example(repo):
    """The onnxruntime example of docs/deployment.md: its first Python block."""
    page = (repo / "docs" / "deployment.md").read_text()
    return re.search(r"```python\n(.*?)```", page, re.DOTALL).group(1)


def test_readme_example_parses_a_photo(repo, keras_model, onnx_file, tmp_path, monkeypatch):
    shutil.copy(onnx_file, tmp_path / "model.onnx")
    photo = Image.fromarray(random_images(45, 70, 3, seed=7).astype("uint8"))
    photo.save(tmp_path / "face.jpg")
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_onnx_example(repo), "docs/deployment.md", "exec"), {})

    labels = np.asarray(Image.open(tmp_path / "face_labels.png"))
    assert labels.shape == (45, 70) and labels.max() < NUM_CLASSES
    # The same photo through Keras, resized as the example resizes it.
    resized = Image.open(tmp_path / "face.jpg").convert("RGB").resize((32, 32), Image.BILINEAR)
    logits = keras_model.predict_on_batch(np.asarray(resized, dtype="float32")[None])
    expected = Image.fromarray(logits[0].argmax(-1).astype("uint8")).resize((70, 45), Image.NEAREST)
    assert (labels == np.asarray(expected)).mean() >= MIN_ARGMAX_AGREEMENT


def test_missing_exporter_is_named_before_any_work(trained_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # makes `import tf2onnx` fail
    with pytest.raises(exporting.MissingPackageError, match=r"'tf2onnx'.*pip install"):
        exporting.export(trained_run / "best.keras", "onnx", tmp_path / "model.onnx")
    assert not list(tmp_path.iterdir())


def test_onnx_needs_the_tensorflow_backend(trained_run, tmp_path, monkeypatch):
    monkeypatch.setattr(exporting.keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="--format onnx needs KERAS_BACKEND=tensorflow"):
        exporting.export(trained_run / "best.keras", "onnx", tmp_path / "model.onnx")
