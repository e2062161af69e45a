"""Fixtures shared by the whole suite: the checkout, tiny data sets, tiny training runs and
the checks of a script's one-line errors."""

import shutil

import pytest
from checkout import REPO
from tiny_celebamask import write_tiny_root

import faceparsing  # noqa: F401  (sets TensorFlow's log level before any test imports it)

# A model small enough to train for an epoch in seconds on a CPU.
TINY_MODEL = [
    "--backbone=mobilenetv2", "--alpha=0.35", "--weights=none", "--aspp_filters=16",
    "--decoder_filters=16", "--image_size=32", "--batch_size=4", "--augment=false",
    "--verbose=0",
]  # fmt: skip


@pytest.fixture(scope="session")
def repo():
    """The root of the checkout under test."""
    return REPO


@pytest.fixture(scope="session")
def fixtures_dir(repo):
    """tests/fixtures: checkpoints saved by older versions, with what they predicted then."""
    return repo / "tests" / "fixtures"


@pytest.fixture(scope="session")
def tiny_train_args():
    """train.py's arguments for one epoch of the tiny model on 8 images, as a function of the
    data root, the run folder and extra `--key=value` options (a repeated key: the last wins)."""

    def arguments(data_root, run_dir, *extra):
        return [f"--data_root={data_root}", f"--run_dir={run_dir}", "--epochs=1",
                "--max_train_images=8", "--max_val_images=4", *TINY_MODEL, *extra]  # fmt: skip

    return arguments


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A 24-image synthetic set in the release layout, shared by the tests that only read it."""
    from faceparsing.data.synthetic import make_demo_dataset

    root = tmp_path_factory.mktemp("demo") / "CelebAMask-HQ"
    make_demo_dataset(root, 24, seed=0)
    return root


@pytest.fixture
def data_copy(demo_root, tmp_path):
    """A private copy of the demo set that a test may damage."""
    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    return root


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A 10-image synthetic set in the release layout, one per test module (its tests may
    write into it)."""
    from faceparsing.data.synthetic import make_demo_dataset

    root = tmp_path_factory.mktemp("release") / "release"
    make_demo_dataset(root, 10, seed=0)
    return root


@pytest.fixture
def tiny_root(tmp_path):
    """Six images of boxes in the release layout, written into tmp_path (`write_tiny_root`):
    ids 0-3 train, 4 val, 5 test."""
    return write_tiny_root(tmp_path)


@pytest.fixture(scope="session")
def lapa_root(tmp_path_factory):
    """16 synthetic faces in LaPa's released layout: 14 train, 1 val, 1 test."""
    from faceparsing.data.synthetic import make_demo_dataset

    root = tmp_path_factory.mktemp("lapa") / "LaPa"
    make_demo_dataset(root, 16, seed=0, layout="lapa")
    return root


@pytest.fixture(scope="session")
def trained_run(demo_root, tiny_train_args, tmp_path_factory):
    """A run folder produced by one tiny epoch of train.py."""
    import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    assert train.main(tiny_train_args(demo_root, run_dir)) == 0
    return run_dir


@pytest.fixture(scope="session")
def lapa_run(lapa_root, tiny_train_args, tmp_path_factory):
    """One tiny epoch of train.py on the LaPa-layout set, found from data_root alone."""
    import train

    run_dir = tmp_path_factory.mktemp("runs") / "lapa"
    assert train.main(tiny_train_args(lapa_root, run_dir)) == 0
    return run_dir


@pytest.fixture
def assert_one_line_error(capsys):
    """A check of what a script printed to stderr: one `error: ...` line, no traceback,
    holding each of the given fragments."""

    def check(*fragments):
        error = capsys.readouterr().err
        assert error.startswith("error: ") and error.count("\n") == 1, error
        assert "Traceback" not in error
        for fragment in fragments:
            assert str(fragment) in error, (fragment, error)

    return check


@pytest.fixture(params=["missing", "corrupt", "five_classes"])
def bad_checkpoint(request, tmp_path):
    """(path, what the error about it says) of a checkpoint that no script can use."""
    path = tmp_path / f"{request.param}.keras"
    if request.param == "missing":
        return path, "checkpoint not found"
    if request.param == "corrupt":
        path.write_bytes(b"PK\x03\x04 not really a zip")
        return path, "could not be loaded"
    import keras

    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(5, 1)]).save(path)
    return path, "predicts 5 classes, expected 19"
