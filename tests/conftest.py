from pathlib import Path

import pytest

import faceparsing  # noqa: F401  (sets TensorFlow's log level before any test imports it)

REPO = Path(__file__).resolve().parents[1]

# A model small enough to train for an epoch in seconds on a CPU.
TINY_MODEL = [
    "--backbone=mobilenetv2", "--alpha=0.35", "--weights=none", "--aspp_filters=16",
    "--decoder_filters=16", "--image_size=32", "--batch_size=4", "--augment=false",
    "--verbose=0",
]  # fmt: skip


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A 24-image synthetic set in the release layout, shared by the tests that only read it."""
    from faceparsing.data.synthetic import make_demo_dataset

    root = tmp_path_factory.mktemp("demo") / "CelebAMask-HQ"
    make_demo_dataset(root, 24, seed=0)
    return root


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A 10-image synthetic set in the release layout, one per test module (its tests may
    write into it)."""
    from faceparsing.data.synthetic import make_demo_dataset

    root = tmp_path_factory.mktemp("release") / "release"
    make_demo_dataset(root, 10, seed=0)
    return root


@pytest.fixture(scope="session")
def lapa_root(tmp_path_factory):
    """16 synthetic faces in LaPa's released layout: 14 train, 1 val, 1 test."""
    from faceparsing.data.synthetic import make_demo_dataset

    root = tmp_path_factory.mktemp("lapa") / "LaPa"
    make_demo_dataset(root, 16, seed=0, layout="lapa")
    return root


def tiny_train_args(data_root, run_dir, *extra):
    return [f"--data_root={data_root}", f"--run_dir={run_dir}", "--epochs=1", "--max_train_images=8",
            "--max_val_images=4", *TINY_MODEL, *extra]  # fmt: skip


@pytest.fixture(scope="session")
def trained_run(demo_root, tmp_path_factory):
    """A run folder produced by one tiny epoch of train.py."""
    import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    assert train.main(tiny_train_args(demo_root, run_dir)) == 0
    return run_dir
