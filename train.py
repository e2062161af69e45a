"""Train DeepLabV3+ for face parsing on CelebAMask-HQ (or the synthetic demo set).

Usage:
    python train.py --config configs/demo.yaml [--key=value ...]

Every setting has a default in `config.TrainConfig`; the YAML file changes some
and `--key=value` overrides any. The run folder (`run_dir`) receives the
resolved `config.yaml`, `metrics.csv`, `best.keras` (best validation mIoU),
`last.keras`, `backup/` and `curves.png`. Rerunning the same command after a
crash or Ctrl-C resumes after the last completed epoch.

Exit status: 0 done, 1 the loss became NaN/inf, 2 a usage error (one line on
stderr; FACEPARSING_DEBUG=1 shows the traceback), 130 interrupted.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Keep TensorFlow's C++ start-up chatter out of the output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import config as config_lib
from io_utils import check_writable_dir, remove_stale_temp_files, report_user_error


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the run folder keeps the last finite epoch."""


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Train DeepLabV3+ on CelebAMask-HQ.",
        epilog="Any config key can be overridden: --epochs=5 --backbone=mobilenetv2 ...",
    )
    parser.add_argument("--config", help="YAML file with the keys to change (see configs/)")
    parser.add_argument(
        "--print_config", action="store_true", help="print the resolved config and exit"
    )
    return parser.parse_known_args(argv)


def prepare_run_dir(config):
    """Create the run folder, refuse a run folder of a different config, write config.yaml."""
    run_dir = Path(config.run_dir)
    check_writable_dir(run_dir)
    for folder in (run_dir, run_dir / "backup"):  # left by a process killed mid-write
        remove_stale_temp_files(folder)
    saved = run_dir / "config.yaml"
    if saved.exists() and (run_dir / "backup" / "state.json").exists():
        previous = config_lib.load_run_config(saved)
        changed = [
            key
            for key, value in config_lib.to_dict(previous).items()
            if getattr(config, key) != value and key not in RESUMABLE_CHANGES
        ]
        if changed:
            raise ValueError(
                f"run_dir {run_dir} holds a run with a different config ({', '.join(changed)}); "
                "use another run_dir or delete the folder"
            )
    config_lib.save(config, saved)
    return run_dir


# Keys that may differ when a run is resumed: they do not change what is learned.
RESUMABLE_CHANGES = {
    "epochs", "workers", "use_multiprocessing", "verbose", "tensorboard", "run_eagerly",
}  # fmt: skip


def ensure_dataset(config):
    """Write the synthetic set into `data_root` when the config asks for it and it is absent."""
    root = Path(config.data_root)
    if config.demo_images > 0 and not (root / "CelebA-HQ-to-CelebA-mapping.txt").exists():
        from synthetic_faces import make_demo_dataset

        print(f"Writing a synthetic set of {config.demo_images} faces to {root} ...", flush=True)
        make_demo_dataset(root, config.demo_images, seed=0)
    if not root.exists():
        raise FileNotFoundError(
            f"data_root {root} does not exist (expected the unzipped CelebAMask-HQ release)"
        )


def select_ids(config, split, limit):
    """Ids of a split, capped at `limit` (0 = all), checked quickly before training."""
    from data_generator import split_ids, validate_split

    ids = split_ids(config.data_root, split)
    if limit:
        ids = ids[:limit]
    if not ids:
        raise ValueError(f"split '{split}' of {config.data_root} has no images")
    validate_split(config.data_root, ids)
    return ids


def label_cache_dir(config):
    """Where merged labels are cached: `cache_dir`, else `<data_root>/.label_cache`
    when that is writable (a read-only dataset simply runs without a cache)."""
    if config.cache_dir.lower() == "none":
        return None
    folder = Path(config.cache_dir) if config.cache_dir else Path(config.data_root) / ".label_cache"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = None
    if folder is None or not os.access(folder, os.W_OK):
        if config.cache_dir:
            raise OSError(f"cache_dir {config.cache_dir} is not writable")
        print(f"Note: {config.data_root} is not writable; merged labels will not be cached.")
        return None
    return str(folder)


def build_datasets(config):
    from data_generator import CelebAMaskHQ

    common = dict(
        batch_size=config.batch_size,
        image_size=config.image_size,
        target=config.target,
        cache_dir=label_cache_dir(config),
        skip_bad_samples=config.skip_bad_samples,
        workers=config.workers,
        use_multiprocessing=config.use_multiprocessing,
    )
    class_weights = None if config.class_weights == "none" else config.class_weights
    train_ids = select_ids(config, config.train_split, config.max_train_images)
    train_data = CelebAMaskHQ(
        config.data_root, split=config.train_split, ids=train_ids, class_weights=class_weights,
        max_weight=config.max_class_weight or None, augment=config.augment, shuffle=True,
        seed=config.seed, **common,
    )  # fmt: skip
    val_ids = select_ids(config, config.val_split, config.max_val_images)
    val_data = CelebAMaskHQ(
        config.data_root, split=config.val_split, ids=val_ids, augment=False, shuffle=False,
        seed=config.seed, **common,
    )  # fmt: skip
    return train_data, val_data


def distribution_scope(config):
    """The scope under which the model is built for `config.distribute`."""
    import contextlib

    import keras

    if config.distribute == "none":
        return contextlib.nullcontext()
    backend = keras.backend.backend()
    if config.distribute == "data_parallel":
        if backend != "jax":
            raise ValueError("distribute=data_parallel needs KERAS_BACKEND=jax; use mirrored with TensorFlow")
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        return contextlib.nullcontext()
    if config.distribute == "multiworker":
        raise ValueError(
            "distribute=multiworker: Keras 3's fit does not run under TensorFlow's "
            "MultiWorkerMirroredStrategy (keras-team/keras#20585); use mirrored on one machine"
        )
    if backend != "tensorflow":
        raise ValueError("distribute=mirrored needs KERAS_BACKEND=tensorflow; use data_parallel with JAX")
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy()
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ValueError(
            f"batch_size {config.batch_size} must be a multiple of the {strategy.num_replicas_in_sync} replicas"
        )
    print(f"Distributing over {strategy.num_replicas_in_sync} replicas.", flush=True)
    return strategy.scope()


def build_model(config):
    import deeplab

    weights = None if config.weights.lower() in ("none", "") else config.weights
    return deeplab.DeepLabV3Plus(
        backbone=config.backbone,
        output_stride=config.output_stride,
        weights=weights,
        alpha=config.alpha,
        aspp_filters=config.aspp_filters,
        decoder_filters=config.decoder_filters,
        dropout=config.dropout,
        freeze_backbone=config.freeze_backbone,
        freeze_batchnorm=config.freeze_batchnorm,
        batchnorm_momentum=config.batchnorm_momentum or None,
    )


def load_init_checkpoint(config, state):
    """The `--init` model, loaded before any slow work so a bad file fails fast."""
    from checkpoints import load_checkpoint

    return load_checkpoint(config.init) if config.init and not state.resuming else None


def initialise_from(model, source, path):
    """Copy the weights of the `--init` model `source` (read from `path`) into `model`."""
    source_weights, target_weights = source.get_weights(), model.get_weights()
    shapes_differ = len(source_weights) != len(target_weights) or any(
        a.shape != b.shape for a, b in zip(source_weights, target_weights, strict=False)
    )
    if shapes_differ:
        raise ValueError(
            f"init checkpoint {path} has a different architecture from this config's model"
        )
    model.set_weights(source_weights)


def compile_model(model, config, steps_per_epoch):
    import losses
    import metrics
    import training

    model.compile(
        optimizer=training.build_optimizer(config, steps_per_epoch),
        loss=losses.build_loss(config.loss, config.target, config.focal_gamma),
        metrics=[metrics.SegmentationMeanIoU()],
        jit_compile={"auto": "auto", "true": True, "false": False}[config.jit_compile],
        run_eagerly=config.run_eagerly,
    )


def build_callbacks(config, run_dir, state, datasets=()):
    import keras

    import training

    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        training.RunFolderCallback(run_dir, state, bad_sample_sources=datasets),
    ]
    if config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
    return callbacks


def train(config):
    """Run one training job described by `config`; return the run summary dict."""
    import keras

    import training

    run_dir = prepare_run_dir(config)
    state = training.ResumeState(run_dir)
    init_source = load_init_checkpoint(config, state)
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.mixed_precision)
    ensure_dataset(config)
    train_data, val_data = build_datasets(config)
    steps_per_epoch = min(config.steps_per_epoch or len(train_data), len(train_data))
    with distribution_scope(config):
        model = build_model(config)
        if init_source is not None:
            initialise_from(model, init_source, config.init)
        compile_model(model, config, steps_per_epoch)
        if state.resuming:
            state.restore(model)
            training.sync_run_folder(model, run_dir, state)
            print(f"Resuming {run_dir} after epoch {state.epoch}.", flush=True)
    if state.epoch >= config.epochs:
        print(f"{run_dir} already finished {state.epoch} epochs; raise --epochs to train more.")
    else:
        print(
            f"Training {config.backbone} OS{config.output_stride} on {len(train_data.ids)} images "
            f"({steps_per_epoch} steps/epoch), validating on {len(val_data.ids)}.",
            flush=True,
        )
        # Same shuffling and augmentation on a resumed run as on an uninterrupted one.
        train_data.set_epoch(state.epoch)
        callbacks = build_callbacks(config, run_dir, state, (train_data, val_data))
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=config.epochs,
            initial_epoch=state.epoch,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            verbose=config.verbose,
        )
        check_diverged(callbacks, run_dir)
    return finish(run_dir, training.ResumeState(run_dir))


def check_diverged(callbacks, run_dir):
    """Raise TrainingDivergedError if the run folder callback saw a NaN/inf loss."""
    for callback in callbacks:
        epoch = getattr(callback, "diverged_epoch", None)
        if epoch is not None:
            raise TrainingDivergedError(
                f"loss became NaN or infinite in epoch {epoch}; {run_dir} keeps epoch "
                f"{epoch - 1}. Lower learning_rate (or check the data), then rerun"
            )


def finish(run_dir, state):
    """Plot the curves, write summary.json and print where everything is."""
    import training

    if not state.rows:
        raise RuntimeError(f"no epoch completed in {run_dir}")
    training.plot_curves(state.rows, run_dir / "curves.png")
    best_row = max(state.rows, key=lambda row: row.get("val_miou", float("-inf")))
    summary = {
        "best_val_miou": best_row.get("val_miou"),
        "best_epoch": best_row["epoch"],
        "epochs": state.epoch,
        "best_checkpoint": str(run_dir / "best.keras"),
        "last_checkpoint": str(run_dir / "last.keras"),
    }
    from io_utils import atomic_write_text

    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    print(f"Best val_miou {summary['best_val_miou']:.4f} at epoch {summary['best_epoch']}.")
    print(
        f"Checkpoints: {summary['best_checkpoint']} (best), {summary['last_checkpoint']} (last); "
        f"metrics: {run_dir / 'metrics.csv'}; curves: {run_dir / 'curves.png'}"
    )
    return summary


def main(argv=None):
    args, overrides = parse_args(argv)
    started = time.monotonic()
    try:
        config = config_lib.resolve(args.config, overrides)
        if args.print_config:
            print(json.dumps(config_lib.to_dict(config), indent=2))
            return 0
        train(config)
    except KeyboardInterrupt:
        print(
            "\nInterrupted. Rerun the same command to resume after the last completed epoch.",
            file=sys.stderr,
        )
        return 130
    except (ValueError, OSError) as error:
        return report_user_error(error)
    except TrainingDivergedError as error:
        return report_user_error(error, exit_code=1)
    print(f"Done in {time.monotonic() - started:.0f}s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
