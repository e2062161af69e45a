import pytest

from faceparsing import config
from faceparsing.errors import ConfigError


def test_yaml_then_cli_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 3\nbackbone: mobilenetv2\nlearning_rate: 1\n")
    resolved = config.resolve(path, ["--epochs=5", "--batch_size", "2"])
    assert resolved.epochs == 5
    assert resolved.batch_size == 2
    assert resolved.backbone == "mobilenetv2"
    assert resolved.learning_rate == 1.0 and isinstance(resolved.learning_rate, float)
    assert resolved.image_size == config.TrainConfig().image_size


def test_unknown_key_lists_valid_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epoch: 3\n")
    with pytest.raises(
        config.ConfigError, match="unknown config key 'epoch'.*Valid keys: data_root"
    ):
        config.resolve(path)
    with pytest.raises(config.ConfigError, match="command line: unknown config key 'lr'"):
        config.resolve(None, ["--lr=0.1"])


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("--epochs=three", "'epochs' expects int, got 'three'"),
        ("--augment=3", "'augment' expects bool"),
        ("--image_size=1.5", "'image_size' expects int"),
        ("--backbone=vgg16", "'backbone' must be one of resnet50|resnet101|mobilenetv2|xception"),
        ("--image_size=8", r"'image_size' must lie in \[32, 2048\], got 8"),
        ("--output_stride=4", "'output_stride' must be one of 8|16|32"),
    ],
)
def test_wrong_values_are_one_line_errors(argument, message):
    with pytest.raises(config.ConfigError, match=message) as info:
        config.resolve(None, [argument])
    assert "\n" not in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(config.ConfigError, match="config file not found"):
        config.resolve(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [3\n")
    with pytest.raises(config.ConfigError, match="is not valid YAML"):
        config.resolve(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(config.ConfigError, match="expected a mapping"):
        config.resolve(listed)


def test_yaml_tags_are_not_executed(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("epochs: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(config.ConfigError, match="not valid YAML"):
        config.resolve(path)


def test_saved_config_round_trips(tmp_path):
    resolved = config.resolve(None, ["--epochs=7", "--jit_compile=false", "--weights=none"])
    config.save(resolved, tmp_path / "config.yaml")
    assert config.load_run_config(tmp_path / "config.yaml") == resolved


def test_shipped_configs_are_valid():
    from pathlib import Path

    paths = sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml"))
    assert {path.name for path in paths} >= {
        "demo.yaml",
        "celebamask_hq.yaml",
        "celebamask_hq_mobile.yaml",
    }
    for path in paths:
        config.resolve(path)


def test_cli_value_without_key_is_rejected():
    with pytest.raises(config.ConfigError, match="unexpected argument 'oops'"):
        config.resolve(None, ["oops"])
    with pytest.raises(config.ConfigError, match="--epochs needs a value"):
        config.resolve(None, ["--epochs"])


def test_workers_is_auto_or_a_positive_count():
    from faceparsing.config import resolve
    from faceparsing.data.loader import worker_count

    assert resolve(None, []).workers == "auto"
    assert worker_count("auto") >= 1 and worker_count(resolve(None, ["--workers=3"]).workers) == 3
    for bad in ("--workers=0", "--workers=many"):
        with pytest.raises(ConfigError, match="'workers' must be auto or a positive integer"):
            resolve(None, [bad])


def test_a_retired_key_is_a_one_line_error_but_old_run_folders_still_read(tmp_path):
    with pytest.raises(ConfigError, match="'use_multiprocessing' was removed; set worker_type"):
        config.resolve(None, ["--use_multiprocessing=true"])
    saved = tmp_path / "config.yaml"  # a run folder written before the key was retired
    saved.write_text("use_multiprocessing: false\nepochs: 3\n")
    assert config.load_run_config(saved).epochs == 3


def test_scopes_say_what_a_rerun_and_each_host_may_change():
    assert config.PER_HOST_KEYS == {
        "data_root", "cache_dir", "run_dir", "workers", "worker_type", "verbose"
    }  # fmt: skip
    assert config.RESUMABLE_KEYS == config.PER_HOST_KEYS | {
        "epochs", "steps_per_execution", "run_eagerly", "tensorboard"
    }  # fmt: skip
    assert "learning_rate" not in config.RESUMABLE_KEYS and "seed" not in config.RESUMABLE_KEYS


def test_exponent_without_a_dot_is_a_float(tmp_path):
    # YAML 1.1 reads 1e-4 as a string; the learning rate is written that way.
    assert config.resolve(None, ["--learning_rate=1e-4"]).learning_rate == 1e-4
    (tmp_path / "c.yaml").write_text("learning_rate: 5e-5\n")
    assert config.resolve(tmp_path / "c.yaml").learning_rate == 5e-5
    with pytest.raises(ConfigError, match="'learning_rate' expects float, got 'fast'"):
        config.resolve(None, ["--learning_rate=fast"])
