"""The processes of a training job: one per host, JAX data parallelism across them all.

`trainer.train` runs every job as a `Cluster`; a single host is a cluster of
one process (`SINGLE_PROCESS`), whose barriers and gathers do nothing.
Keras' own launcher variables describe a multi-host job: `KERAS_DISTRIBUTION_JOB_ADDRESSES`
(host:port of process 0, the coordinator), `KERAS_DISTRIBUTION_NUM_PROCESSES` and
`KERAS_DISTRIBUTION_PROCESS_ID`. With them and `distribute=data_parallel`, `join`
joins the job through `keras.distribution.initialize()` and the trainer trains one
model with `DataParallel` over every device of every process:

- `batch_size` stays the global batch. Each process loads only its own slice of
  every global batch (`faceparsing.data.setup.build_datasets`), so the batches, the
  steps and the learning-rate schedule are those of one process running that batch.
- Validation pads the slices to one shape with images of weight 0, which neither
  the loss nor the mIoU counts, so `val_loss` and `val_miou` are the single-process ones.
- Process 0 alone writes the run folder; every process reads it to resume.
- A step of the setup that fails in one process stops all of them (`Cluster.together`),
  and a process that fails later leaves at once (`run_and_leave`).
"""

import contextlib
import dataclasses
import json
import multiprocessing
import os
import sys
import traceback
import zlib

import keras
import numpy as np

from faceparsing import config as config_lib
from faceparsing.errors import ConfigError, first_line

LAUNCHER_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)

_joined = None  # the Cluster this process joined; JAX allows joining once per process


class PeerProcessError(ConnectionError):
    """Another process of the job failed or cannot be reached."""


# How a collective reports that another process went away (gloo on CPU, NCCL and
# the coordination service on GPUs).
PEER_FAILURE_MARKERS = ("Gloo", "Connection reset by peer", "Connection refused", "UNAVAILABLE",
                        "DEADLINE_EXCEEDED", "heartbeat", "NCCL")  # fmt: skip


@contextlib.contextmanager
def peer_failures_reported(cluster):
    """Turn a collective that failed because another process left into PeerProcessError
    (a single process has no other to lose)."""
    if cluster.num_processes == 1:
        yield
        return
    try:
        yield
    except PeerProcessError:
        raise
    except Exception as error:
        if not any(marker in str(error) for marker in PEER_FAILURE_MARKERS):
            raise
        raise PeerProcessError(
            f"{cluster} lost another process of the job ({first_line(error, '')[:200]})"
        ) from error


def requested(config, environ=os.environ):
    """True when Keras' launcher variables ask for a multi-host run of `config`.

    Raises ConfigError when they are set for a mode that cannot use them (every
    process would otherwise train alone into the same run folder) or only some
    of them are set. `distribute=multiworker` is left to the trainer's refusal.
    """
    present = [name for name in LAUNCHER_VARIABLES if environ.get(name)]
    if not present or config.distribute == "multiworker":
        return False
    if config.distribute != "data_parallel":
        raise ConfigError(
            f"{present[0]} is set, but distribute={config.distribute} trains on one host; "
            "use --distribute=data_parallel with KERAS_BACKEND=jax, or unset the "
            "KERAS_DISTRIBUTION_* variables"
        )
    missing = [name for name in LAUNCHER_VARIABLES if not environ.get(name)]
    if missing:
        raise ConfigError(
            f"multi-host training needs {', '.join(LAUNCHER_VARIABLES)}; "
            f"{', '.join(missing)} is not set"
        )
    return True


@dataclasses.dataclass(frozen=True)
class Cluster:
    """This process's place in the job."""

    num_processes: int
    process_id: int

    @property
    def is_writer(self):
        return self.process_id == 0

    def __str__(self):
        return f"process {self.process_id} of {self.num_processes}"

    @contextlib.contextmanager
    def together(self, step):
        """Run a setup step in every process; if it fails in any process, it fails in all.

        Without this, the processes that succeeded would wait at their next
        collective for the one that stopped. A single process just runs it.
        """
        if self.num_processes == 1:
            yield
            return
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):  # the others may be gone already
                self._failed_processes(False)
            raise
        failed = self._failed_processes(True)
        if failed:
            names = ", ".join(str(process) for process in failed)
            raise PeerProcessError(
                f"process {names} of {self.num_processes} failed while {step} (see its "
                "output); this process stops too"
            )

    def _failed_processes(self, succeeded):
        flags = allgather(np.array([int(succeeded)], np.int32), self).reshape(-1)
        return [process for process, flag in enumerate(flags) if not flag]


SINGLE_PROCESS = Cluster(1, 0)


def join(config, environ=os.environ):
    """This process's Cluster: the multi-host job that Keras' launcher variables
    describe (joined here, see `connect`), else a cluster of one process."""
    return connect(config, environ) if requested(config, environ) else SINGLE_PROCESS


def cluster_from_environment(environ=os.environ):
    """The Cluster that Keras' launcher variables describe; errors name the variable."""
    num_processes = _integer_variable(environ, "KERAS_DISTRIBUTION_NUM_PROCESSES")
    process_id = _integer_variable(environ, "KERAS_DISTRIBUTION_PROCESS_ID")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ConfigError(
            f"KERAS_DISTRIBUTION_PROCESS_ID must lie in 0..{num_processes - 1} and "
            f"KERAS_DISTRIBUTION_NUM_PROCESSES be at least 1, got {process_id} and {num_processes}"
        )
    return Cluster(num_processes, process_id)


def _integer_variable(environ, name):
    try:
        return int(environ[name])
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {environ[name]!r}") from None


def connect(config, environ=os.environ):
    """Join the job that Keras' launcher variables describe; return this process's Cluster.

    Call it before any JAX computation. On CPU the processes exchange data over
    gloo (TCP), which JAX needs set before it starts; `JAX_CPU_COLLECTIVES_IMPLEMENTATION`
    chooses another. The first call blocks until every process has joined
    (JAX gives up after 5 minutes).
    """
    global _joined
    cluster = cluster_from_environment(environ)
    if keras.backend.backend() != "jax":
        raise ConfigError(
            "multi-host training needs KERAS_BACKEND=jax; TensorFlow's multi-worker mode "
            "is refused: Keras 3's fit does not run under it (keras-team/keras#20585)"
        )
    if _joined is None:
        import jax

        if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in environ:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        address = environ["KERAS_DISTRIBUTION_JOB_ADDRESSES"].split(",")[0]
        print(f"{cluster}: joining the job at {address} ...", flush=True)
        try:
            keras.distribution.initialize()
        except Exception as error:  # JAX raises its runtime error type for every failure
            raise PeerProcessError(
                f"{cluster} could not join the job at {address}: {first_line(error)}"
            ) from None
        _joined = cluster
    elif _joined != cluster:
        raise ConfigError(f"this process already joined the job as {_joined}, not as {cluster}")
    return cluster


def allgather(values, cluster=None):
    """Stack `values` (a NumPy array, same shape everywhere) of every process: (P, ...)."""
    if cluster is not None and cluster.num_processes == 1:
        return np.asarray(values)[None]
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(values))


def run_fingerprint(config):
    """A number that differs when two configs would train differently (per-host keys aside)."""
    shared = {
        k: v for k, v in config_lib.to_dict(config).items() if k not in config_lib.PER_HOST_KEYS
    }
    return zlib.crc32(json.dumps(shared, sort_keys=True).encode()) & 0x7FFFFFFF


def check_same_run(cluster, config, state):
    """Every process must train the same config from the same resume state."""
    mine = np.array([run_fingerprint(config), state.epoch], np.int32)
    fingerprints, epochs = allgather(mine, cluster).T
    differ = [str(p) for p, value in enumerate(fingerprints) if value != fingerprints[0]]
    if differ:
        raise ConfigError(
            f"process {', '.join(differ)} runs another config than process 0 (keys other "
            f"than {', '.join(sorted(config_lib.PER_HOST_KEYS))} must match); give every host the same "
            "command"
        )
    if len(set(epochs.tolist())) > 1:
        raise ConfigError(
            f"the processes see different resume states (epochs {epochs.tolist()}): run_dir "
            "must be one folder that every host shares"
        )


@contextlib.contextmanager
def outside_distribution():
    """Work on this process's replica of the weights only.

    Under the distribution, saving a model creates variables across every
    process; process 0 saves alone, so it saves outside it.
    """
    distribution = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(distribution)


class OnThisProcess(keras.callbacks.Callback):
    """Runs the run folder callback of process 0 outside the distribution."""

    def __init__(self, callback):
        super().__init__()
        self.callback = callback

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(model)

    def on_epoch_begin(self, epoch, logs=None):
        self.callback.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        with outside_distribution():
            self.callback.on_epoch_end(epoch, logs)

    @property
    def diverged_epoch(self):
        return self.callback.diverged_epoch


class DivergenceWatch(keras.callbacks.Callback):
    """What the other processes keep of the run folder callback: the epoch whose loss
    became NaN or infinite (the loss is the job's, so every process sees the same)."""

    diverged_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.diverged_epoch = epoch + 1
            self.model.stop_training = True


def job_bad_samples(datasets, gather=None):
    """[(image id, reason)] of the samples that any process skipped (a collective).

    Each process knows only the reasons of its own; another's are named by id.
    """
    gather = gather or allgather
    mine = {image_id: reason for dataset in datasets for image_id, reason in dataset.bad_samples}
    counts = gather(np.array([len(mine)], np.int32)).reshape(-1)
    padded = np.full(max(1, int(counts.max())), -1, np.int32)
    padded[: len(mine)] = sorted(mine)
    everyone = {int(image_id) for image_id in gather(padded).reshape(-1) if image_id >= 0}
    return [(image_id, mine.get(image_id, f"image {image_id}, skipped by another process"))
            for image_id in sorted(everyone)]  # fmt: skip


class JobBadSamples(keras.callbacks.Callback):
    """The skipped samples of every process, gathered after each epoch: the run folder
    callback of process 0 reads it as its `bad_sample_sources`. Runs in every process."""

    skip_bad_samples = True

    def __init__(self, datasets):
        super().__init__()
        self.datasets = datasets
        self.bad_samples = []

    def on_epoch_end(self, epoch, logs=None):
        with outside_distribution():
            self.bad_samples = job_bad_samples(self.datasets)


def run_and_leave(command, *args):
    """Return `command(*args)`; a process of a multi-host job that fails exits at once.

    At exit, JAX holds every process until all of them reach shutdown (up to 5
    minutes). A failed process that leaves at once instead makes the others'
    next collective fail, so the whole job stops within seconds on CPU.
    """
    try:
        status = command(*args)
    except BaseException:
        if _joined is None:
            raise
        traceback.print_exc()
        status = 1
    if status and _joined is not None:
        print(
            f"{_joined} stopped; the others stop too. Once the error above is fixed, rerun the "
            "same command on every host: training resumes after the last completed epoch.",
            file=sys.stderr,
        )
        _leave(status)
    return status


def _leave(status):
    for child in multiprocessing.active_children():  # the data loader's worker processes
        child.terminate()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
