"""setup: from a config to the datasets (the demo set, the pack at the training size)."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from faceparsing import config as config_module
from faceparsing.data import packed, setup
from faceparsing.data.dataset import CelebAMaskHQ
from faceparsing.errors import ConfigError


def test_demo_recipe_writes_nothing_into_a_lapa_folder(repo, lapa_root):
    before = sorted(path.relative_to(lapa_root) for path in lapa_root.rglob("*"))
    config = config_module.resolve(repo / "configs" / "demo.yaml", [f"--data_root={lapa_root}"])
    assert config.demo_images == 1000
    setup.ensure_dataset(config)  # before issue 23: 1,000 synthetic faces written here
    assert sorted(path.relative_to(lapa_root) for path in lapa_root.rglob("*")) == before


def test_pack_cache_decodes_once_at_the_training_size_and_reuses_it(release, tmp_path):
    root = tmp_path / "release"
    shutil.copytree(release, root)
    config = config_module.resolve(None, [f"--data_root={root}", "--pack_cache=auto",
                                          "--image_size=32", "--batch_size=2"])  # fmt: skip
    train_data, val_data = setup.build_datasets(config)
    folder = root / ".pack_32"
    assert train_data.layout.kind == val_data.layout.kind == "packed"
    assert Path(train_data.layout.root) == Path(val_data.layout.root) == folder
    assert packed.read_manifest(folder)["image_size"] == 32
    assert not (root / ".label_cache").exists()  # the pack holds the merged labels
    # The same ids, and labels that are the release's resized with nearest neighbour.
    release_data = CelebAMaskHQ(root, "train", batch_size=2, image_size=32, augment=False,
                                shuffle=False, drop_remainder=True)  # fmt: skip
    assert train_data.ids == release_data.ids
    unshuffled = CelebAMaskHQ(folder, "train", batch_size=2, image_size=32, augment=False,
                              shuffle=False, drop_remainder=True)  # fmt: skip
    assert np.array_equal(unshuffled[0][1], release_data[0][1])
    written = (folder / packed.MANIFEST).stat().st_mtime_ns
    setup.build_datasets(config)  # unchanged source: the pack is reused
    assert (folder / packed.MANIFEST).stat().st_mtime_ns == written


def test_pack_cache_without_array_record_trains_from_the_release(release, monkeypatch, capsys):
    def missing():
        raise ConfigError("packed folders need the array-record package")

    monkeypatch.setattr(packed, "array_record", missing)
    config = config_module.resolve(None, [f"--data_root={release}", "--pack_cache=auto",
                                          "--image_size=32", "--cache_dir=none"])  # fmt: skip
    train_data, _ = setup.build_datasets(config)
    assert train_data.layout.kind == "celebamask_hq"
    assert "pack_cache needs the array-record package" in capsys.readouterr().out
    assert not (release / ".pack_32").exists()


def test_pack_cache_auto_leaves_a_read_only_folder_alone(release, monkeypatch, capsys):
    release.chmod(0o555)
    real_access = setup.os.access
    monkeypatch.setattr(  # root may write anywhere: ask as a user would
        setup.os,
        "access",
        lambda path, mode: False if Path(path) == release else real_access(path, mode),
    )
    try:
        config = config_module.resolve(None, [f"--data_root={release}", "--pack_cache=auto",
                                              "--image_size=32", "--cache_dir=none"])  # fmt: skip
        train_data, _ = setup.build_datasets(config)
    finally:
        release.chmod(0o755)
    assert train_data.layout.kind == "celebamask_hq"
    assert f"{release} is not writable; pack_cache: auto is off" in capsys.readouterr().out
    assert not (release / ".pack_32").exists()


def test_global_batch_must_split_evenly_over_processes(release):
    config = config_module.resolve(None, [f"--data_root={release}", "--batch_size=5"])
    with pytest.raises(ConfigError, match="batch_size 5 must be a multiple of the 2 processes"):
        setup.build_datasets(config, num_processes=2, process_id=0)
