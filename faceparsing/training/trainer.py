"""One training run, start to finish: `train(config)` is what `train.py` calls.

The steps, in order: refuse a distribution mode the backend cannot run, join
the job's processes (one, unless Keras' launcher variables name several), prepare
the run folder, load an `--init` checkpoint (a bad file fails before slow work),
write the synthetic set if asked and build and check this process's datasets (the
data set-up is `faceparsing.data.setup`), build and compile the model under the
run's precision policy and distribution (both restored afterwards), resume, fit,
summarise. Process 0 alone writes the run folder.
"""

import contextlib
import json
from pathlib import Path

import keras

from faceparsing.checkpoints import load_checkpoint
from faceparsing.classes import class_set_of
from faceparsing.data import setup
from faceparsing.data.dataset import FollowEpochs
from faceparsing.errors import ConfigError
from faceparsing.metrics import SegmentationMeanIoU
from faceparsing.model.atrous import fast_atrous_for
from faceparsing.model.deeplabv3plus import DeepLabV3Plus
from faceparsing.model.legacy import copy_flat_head
from faceparsing.training import multihost, run_folder
from faceparsing.training.losses import build_loss
from faceparsing.training.schedules import build_optimizer


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the run folder keeps the last finite epoch."""


def train(config):
    """Run one training job described by `config` (a TrainConfig); return the summary dict.

    One flow for every scale: a single host is a cluster of one process, whose
    barriers and gathers do nothing; with Keras' launcher variables this is one
    process of a multi-host job, and process 0 alone writes the run folder.
    """
    check_distribute_mode(config)
    cluster = multihost.join(config)
    run_dir = Path(config.run_dir)
    with cluster.together("preparing the run folder and the data"):
        if cluster.is_writer:
            run_folder.prepare_run_dir(config)
            setup.ensure_dataset(config)
    with cluster.together("reading the run folder and the data"):
        if not cluster.is_writer:
            setup.ensure_dataset(config)
        state = run_folder.ResumeState(run_dir)
        init_source = load_init_checkpoint(config, state)
        train_data, val_data = process_datasets(config, cluster)
    multihost.check_same_run(cluster, config, state)
    keras.utils.set_random_seed(config.seed)
    steps_per_epoch = len(train_data)  # config.steps_per_epoch, or one pass
    with multihost.peer_failures_reported(cluster), run_environment(config, cluster):
        model = build_model(config)
        if init_source is not None:
            initialise_from(model, init_source, config.init)
        compile_model(model, config, steps_per_epoch, state.plan(config.epochs))
        if state.resuming:
            resume(model, cluster, state, run_dir)
        if state.epoch >= config.epochs:
            print(f"{run_dir} already finished {state.epoch} epochs; raise --epochs to train more.")
        else:
            callbacks = process_callbacks(config, cluster, state, (train_data, val_data))
            fit(model, config, state, train_data, val_data, steps_per_epoch, callbacks)
    with cluster.together("writing the summary"):
        if cluster.is_writer:
            run_folder.write_summary(run_dir, run_folder.ResumeState(run_dir))
    return json.loads((run_dir / "summary.json").read_text())


def resume(model, cluster, state, run_dir):
    """Load the last completed epoch; process 0 rewrites the files derived from it."""
    state.restore(model)
    if cluster.is_writer:
        with multihost.outside_distribution():
            run_folder.sync_run_folder(model, run_dir, state)
    print(f"Resuming {run_dir} after epoch {state.epoch}.", flush=True)


def process_datasets(config, cluster):
    """This process's training and validation datasets (`setup.build_datasets`): its
    slice of every global batch, and full validation batches under a `distribute` mode."""
    if config.pack_cache and cluster.num_processes > 1:
        raise ConfigError(
            "pack_cache writes its pack from one process; with several processes pack once "
            "(python data_generator.py pack --image_size N) and give the packed folder as data_root"
        )
    return setup.build_datasets(config, cluster.num_processes, cluster.process_id)


@contextlib.contextmanager
def run_environment(config, cluster=multihost.SINGLE_PROCESS):
    """The run's mixed-precision policy and distribution; the previous ones come back after.

    Both are process-wide Keras settings: restoring them keeps a second run in
    the same process (tests, the imbalance study) from inheriting the first's.
    """
    previous_policy = keras.mixed_precision.global_policy()
    previous_distribution = keras.distribution.distribution()
    keras.mixed_precision.set_global_policy(config.mixed_precision)
    try:
        with distribution_scope(config, cluster):
            yield
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        keras.distribution.set_distribution(previous_distribution)


def check_distribute_mode(config):
    """Refuse a `distribute` mode this backend cannot run, before anything is written."""
    backend = keras.backend.backend()
    if config.distribute == "multiworker":
        raise ConfigError(
            "distribute=multiworker: Keras 3's fit does not run under TensorFlow's "
            "MultiWorkerMirroredStrategy (keras-team/keras#20585); use mirrored on one machine"
        )
    if config.distribute == "data_parallel" and backend != "jax":
        raise ConfigError(
            "distribute=data_parallel needs KERAS_BACKEND=jax; use mirrored with TensorFlow"
        )
    if config.distribute == "mirrored" and backend != "tensorflow":
        raise ConfigError(
            "distribute=mirrored needs KERAS_BACKEND=tensorflow; use data_parallel with JAX"
        )


def check_batch_splits(config, cluster, devices):
    """Each process's share of `batch_size` must split evenly over its `devices`."""
    batch_size = config.batch_size // cluster.num_processes
    if batch_size % devices:
        share = (
            f" gives {batch_size} images to each process, which"
            if cluster.num_processes > 1
            else ""
        )
        raise ConfigError(
            f"batch_size {config.batch_size}{share} must be a multiple of the {devices} devices "
            f"(distribute={config.distribute}); batch_size is the global batch"
        )
    print(f"Distributing each batch of {batch_size} over {devices} devices.", flush=True)


def distribution_scope(config, cluster=multihost.SINGLE_PROCESS):
    """The scope under which the model is built and trained for `config.distribute`."""
    check_distribute_mode(config)
    if config.distribute == "none":
        return contextlib.nullcontext()
    if config.distribute == "data_parallel":
        import jax

        check_batch_splits(config, cluster, jax.local_device_count())
        # Each process feeds its own slice of every batch (setup.build_datasets):
        # Keras cannot shard a PyDataset across processes.
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(auto_shard_dataset=False)
        )
        return contextlib.nullcontext()
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy()
    check_batch_splits(config, cluster, strategy.num_replicas_in_sync)
    return strategy.scope()


def build_model(config, class_set=None):
    """The DeepLabV3Plus that `config` describes, predicting `class_set`
    (default: `setup.training_class_set(config)`)."""
    weights = None if config.weights.lower() in ("none", "") else config.weights
    devices = [device.split(":")[0].lower() for device in keras.distribution.list_devices()]
    return DeepLabV3Plus(
        fast_atrous=fast_atrous_for(config.fast_atrous, keras.backend.backend(), devices),
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
        class_set=class_set or setup.training_class_set(config),
    )


def load_init_checkpoint(config, state):
    """The `--init` model, loaded before any slow work so a bad file fails fast."""
    return load_checkpoint(config.init) if config.init and not state.resuming else None


def initialise_from(model, source, path):
    """Copy the weights of the `--init` model `source` (read from `path`) into `model`.

    A source with another class set gives everything but the last layer
    ("logits"): backbone, ASPP and decoder are kept, the head starts anew.
    """
    source_set, target_set = class_set_of(source), class_set_of(model)
    new_head = source_set != target_set
    skipped = {HEAD_LAYER} if new_head else set()
    flat = getattr(source, "head", "layers") == "flat" and model.head == "layers"
    if flat:  # a checkpoint saved before the head layers
        skipped |= {"aspp", "decoder"}
    if not _same_shapes(source, model, skipped):
        raise ConfigError(
            f"init checkpoint {path} has a different architecture from this config's model"
        )
    if flat:
        try:
            copy_flat_head(source, model)
        except (KeyError, ValueError):
            raise ConfigError(
                f"init checkpoint {path} has a different architecture from this config's model"
            ) from None
    for layer in model.layers:
        if layer.name not in skipped and layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
    if new_head:
        print(
            f"Init from {path}: backbone, ASPP and decoder kept; a new head for "
            f"{target_set.num_classes} classes ({target_set.name}) replaces its "
            f"{source_set.num_classes} ({source_set.name}).",
            flush=True,
        )


HEAD_LAYER = "logits"  # DeepLabV3Plus' last convolution: its channels are the classes


def _same_shapes(source, model, skipped):
    for layer in model.layers:
        if layer.name in skipped or not layer.weights:
            continue
        try:
            theirs = source.get_layer(layer.name).get_weights()
        except ValueError:
            return False
        mine = layer.get_weights()
        if len(theirs) != len(mine) or any(
            a.shape != b.shape for a, b in zip(theirs, mine, strict=True)
        ):
            return False
    return True


def compile_model(model, config, steps_per_epoch, lr_segments=None):
    num_classes = class_set_of(model).num_classes
    model.compile(
        optimizer=build_optimizer(config, steps_per_epoch, lr_segments),
        loss=build_loss(config.loss, config.target, config.focal_gamma, num_classes),
        # Weighted only so that it sees sample_weight: it counts every pixel of
        # weight > 0 once, and multi-host validation marks padding with weight 0.
        weighted_metrics=[SegmentationMeanIoU(num_classes)],
        jit_compile={"auto": "auto", "true": True, "false": False}[config.jit_compile],
        steps_per_execution=config.steps_per_execution,
        run_eagerly=config.run_eagerly,
    )


def fit(model, config, state, train_data, val_data, steps_per_epoch, callbacks):
    """Train from the epoch after `state.epoch` to `config.epochs` with `callbacks`
    (which write the run folder)."""
    print(
        f"Training {config.backbone} OS{config.output_stride} on {len(train_data.ids)} images "
        f"({steps_per_epoch} steps/epoch), validating on {len(val_data.ids)}.",
        flush=True,
    )
    # Batches are a pure function of (seed, epoch, index), epochs counted from the run's
    # start (FollowEpochs): a resumed run gets the batches of an uninterrupted one, so
    # Keras must not shuffle.
    train_data.set_epoch(state.epoch)
    with train_data, val_data:
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=config.epochs,
            initial_epoch=state.epoch,
            shuffle=False,
            callbacks=[FollowEpochs(train_data), *callbacks],
            verbose=config.verbose,
        )
    check_diverged(callbacks, config)


def build_callbacks(config, run_dir, state, datasets=()):
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        run_folder.RunFolderCallback(run_dir, state, bad_sample_sources=datasets),
    ]
    if config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
    return callbacks


def process_callbacks(config, cluster, state, datasets):
    """Process 0 writes the run folder (outside the distribution: see
    `multihost.OnThisProcess`); the others only watch the loss. With
    `skip_bad_samples`, every process gathers the samples any process skipped
    (`multihost.JobBadSamples`), which the run folder counts."""
    gathered, sources = [], datasets
    if cluster.num_processes > 1 and config.skip_bad_samples:
        gathered = sources = [multihost.JobBadSamples(datasets)]  # runs before the run folder's
    if not cluster.is_writer:
        return [*gathered, keras.callbacks.TerminateOnNaN(), multihost.DivergenceWatch()]
    callbacks = build_callbacks(config, Path(config.run_dir), state, sources)
    return gathered + [
        multihost.OnThisProcess(callback)
        if isinstance(callback, run_folder.RunFolderCallback)
        else callback
        for callback in callbacks
    ]


def check_diverged(callbacks, config):
    """Raise TrainingDivergedError if the run folder callback saw a NaN/inf loss."""
    for callback in callbacks:
        epoch = getattr(callback, "diverged_epoch", None)
        if epoch is not None:
            raise TrainingDivergedError(divergence_advice(config, epoch))


def divergence_advice(config, epoch):
    """What to do after the loss of `epoch` became NaN/inf: a command that works.

    Rerunning unchanged replays the same batches (resume is exact), and a
    changed learning_rate is refused in the same run_dir, so the way on is a
    new run that starts from the last finite weights (`--init`).
    """
    lower = f"--learning_rate={config.learning_rate / 10:g}"
    message = f"loss became NaN or infinite in epoch {epoch}; "
    if epoch == 1:
        return (
            message + f"nothing was saved; rerun the same command with {lower} (or check the data)"
        )
    run_dir = Path(config.run_dir)
    new_run = run_dir.with_name(f"{run_dir.name}-lr{config.learning_rate / 10:g}")
    return message + (
        f"{run_dir} keeps epoch {epoch - 1}. To go on from its weights with a lower learning "
        f"rate (or after checking the data), start a new run: rerun the same command with "
        f"--init={run_dir / 'last.keras'} --run_dir={new_run} {lower}"
    )
