"""The run folder: resume state, per-epoch callback, metrics.csv, checkpoints, curves.

The run folder holds `config.yaml`, `metrics.csv`, `best.keras`, `last.keras`,
`backup/` (what a rerun resumes from) and `curves.png`. Every file is written
atomically, so a kill at any moment leaves the previous or the new version.
After each epoch the resume state is committed first; metrics.csv, last.keras
and best.keras are derived from it and rewritten when a run resumes, so they
never get ahead of what a rerun will continue from.
"""

import csv
import io
import json
import time
from pathlib import Path

import keras
import numpy as np

from faceparsing import config as config_lib
from faceparsing.classes import class_set_of
from faceparsing.errors import RunFolderError
from faceparsing.files import (
    atomic_path,
    atomic_write_text,
    check_writable_dir,
    remove_stale_temp_files,
)
from faceparsing.metrics import SegmentationMeanIoU, scores_from_confusion
from faceparsing.training.schedules import current_learning_rate

METRIC_COLUMNS = ("epoch", "loss", "val_loss", "val_miou", "learning_rate", "seconds")


def write_metrics_csv(path, rows):
    """Write every epoch's row (a list of dicts) to `path` atomically."""
    columns = list(METRIC_COLUMNS) + sorted(
        {key for row in rows for key in row} - set(METRIC_COLUMNS)
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _format(row.get(key, "")) for key in columns})
    atomic_write_text(path, buffer.getvalue())


def _format(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


class ResumeState:
    """What a rerun needs to go on: last completed epoch, metric rows, best score.

    Lives in `<run_dir>/backup/state.json`, which points to the weights file
    (model and optimiser, `epoch_NNNN.keras`) of that epoch. The weights are written first and the
    JSON last, each atomically, so the JSON always names a complete file.
    """

    def __init__(self, run_dir):
        self.backup_dir = Path(run_dir) / "backup"
        self.path = self.backup_dir / "state.json"
        self.epoch = 0
        self.rows = []
        self.best = None
        self.weights_file = None
        self.lr_segments = None  # [[start_epoch, end_epoch], ...], see schedules.build_schedule
        self.random_state = []  # dropout generators: not part of Keras' weight files
        if self.path.exists():
            self._read()

    def _read(self):
        try:
            state = json.loads(self.path.read_text())
            self.epoch = int(state["epoch"])
            self.rows = list(state["rows"])
            self.best = state.get("best")
            self.weights_file = self.backup_dir / state["weights"]
            self.lr_segments = state.get("lr_segments")
            self.random_state = list(state.get("random_state", []))
        except (ValueError, KeyError, TypeError) as error:
            raise RunFolderError(
                f"resume state {self.path} is unreadable ({error}); delete {self.backup_dir} to start over"
            ) from None
        if not self.weights_file.exists():
            raise RunFolderError(
                f"resume state {self.path} names a missing file {self.weights_file}; delete {self.backup_dir} to start over"
            )

    @property
    def resuming(self):
        return self.epoch > 0

    def plan(self, epochs):
        """Set and return `lr_segments` for a run of `epochs` epochs.

        A new run has one segment, [0, epochs]. A rerun with another `epochs`
        adds [last completed epoch, epochs], which the schedule continues
        without a jump. A state written before segments were recorded counts
        as planned for `epochs`.
        """
        if not self.resuming or not self.lr_segments:
            segments = [[0, epochs]]
        else:
            segments = [list(segment) for segment in self.lr_segments]
            if segments[-1][1] != epochs and self.epoch < epochs:
                segments.append([self.epoch, epochs])
        self.lr_segments = segments
        return segments

    def save(self, model, epoch, rows, best):
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        weights_file = self.backup_dir / f"epoch_{epoch:04d}.keras"
        # A .keras archive, not .weights.h5: Keras builds its HDF5 part in memory
        # and writes a zip through Python, so a full disk raises an OSError;
        # h5py writing to a full disk fails in its destructors and crashes.
        save_model_atomic(model, weights_file)
        # In model order: variable names carry per-process counters.
        random_state = [
            np.asarray(keras.ops.convert_to_numpy(variable)).tolist()
            for variable in random_state_variables(model)
        ]
        state = {
            "epoch": epoch, "rows": rows, "best": best, "weights": weights_file.name,
            "lr_segments": self.lr_segments, "random_state": random_state,
        }  # fmt: skip
        atomic_write_text(self.path, json.dumps(state, indent=1))
        for old in self.backup_dir.glob("epoch_*"):  # also .weights.h5 of older versions
            if old != weights_file:
                old.unlink(missing_ok=True)
        self.epoch, self.rows, self.best, self.weights_file = epoch, rows, best, weights_file
        self.random_state = random_state

    def restore(self, model):
        """Load weights, optimiser state and dropout generators of the last completed epoch."""
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(self.weights_file)
        variables = random_state_variables(model)
        if len(variables) == len(self.random_state):  # else a state from before they were kept
            for variable, value in zip(variables, self.random_state, strict=True):
                variable.assign(np.asarray(value, variable.dtype))


def random_state_variables(model):
    """The state of every random generator of `model` (dropout masks), which Keras'
    weight files leave out; a resume restores them so the masks go on as they would."""
    return [
        variable
        for variable in model.non_trainable_variables
        if variable.path.endswith("seed_generator_state")
    ]


class RunFolderCallback(keras.callbacks.Callback):
    """After every epoch: resume state, metrics.csv, last.keras, best.keras, a summary line.

    An epoch whose loss is NaN or infinite is not saved (`diverged_epoch` records
    it), so a rerun resumes from the last finite weights. Datasets given in
    `bad_sample_sources` that skip unreadable samples add a `skipped_samples`
    column (distinct samples skipped so far) and a line naming them.

    Args:
        run_dir: path. The run folder.
        state: ResumeState. Holds rows of earlier epochs when resuming.
        monitor: str. Metric that picks `best.keras`; higher is better.
        print_fn: callable. Where the per-epoch summary line goes.
        bad_sample_sources: sequence of CelebAMaskHQ. Datasets whose
            `bad_samples` are reported. Defaults to none.

    When the model is compiled with a `SegmentationMeanIoU`, `val_miou`,
    `val_mean_f1` and `val_pixel_accuracy` come from its exact validation
    confusion matrix through `scores_from_confusion`, the code of `evaluate.py`.
    """

    def __init__(
        self,
        run_dir,
        state,
        monitor="val_miou",
        print_fn=print,
        bad_sample_sources=(),
    ):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.state = state
        self.monitor = monitor
        self.print_fn = print_fn
        self.bad_sample_sources = [
            dataset for dataset in bad_sample_sources if getattr(dataset, "skip_bad_samples", False)
        ]
        self.rows = [row for row in state.rows if row["epoch"] <= state.epoch]
        self.best = state.best
        self.diverged_epoch = None
        self._epoch_start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        row = {"epoch": epoch + 1}
        row.update({key: float(value) for key, value in logs.items() if key != "learning_rate"})
        metric = confusion_metric(self.model)
        if metric is not None and "val_miou" in row:
            # After validation the metric holds the validation counts.
            names = class_set_of(self.model).names
            scores = scores_from_confusion(metric.confusion_matrix(), names)
            row["val_miou"] = scores["miou"]
            row["val_mean_f1"] = scores["mean_f1"]
            row["val_pixel_accuracy"] = scores["pixel_accuracy"]
        row["learning_rate"] = current_learning_rate(self.model.optimizer)
        row["seconds"] = time.monotonic() - self._epoch_start
        if "loss" in row and not np.isfinite(row["loss"]):
            self.diverged_epoch = row["epoch"]
            self.model.stop_training = True
            return
        if self.bad_sample_sources:
            row["skipped_samples"] = self._report_bad_samples()
        self.rows.append(row)
        score = row.get(self.monitor)
        improved = (
            score is not None and np.isfinite(score) and (self.best is None or score > self.best)
        )
        if improved:
            self.best = score
        self._write(row, improved)
        self.print_fn(self._summary(row, improved))

    def _report_bad_samples(self):
        bad = [bad for dataset in self.bad_sample_sources for bad in dataset.bad_samples]
        if bad:
            listed = "; ".join(reason for _, reason in bad[:5])
            more = f"; ... and {len(bad) - 5} more" if len(bad) > 5 else ""
            self.print_fn(f"skipped {len(bad)} unreadable samples: {listed}{more}")
        return len(bad)

    def _write(self, row, improved):
        # The resume state is the commit point; the other files follow from it.
        self.state.save(self.model, row["epoch"], self.rows, self.best)
        write_metrics_csv(self.run_dir / "metrics.csv", self.rows)
        save_model_atomic(self.model, self.run_dir / "last.keras")
        if improved:
            save_model_atomic(self.model, self.run_dir / "best.keras")

    def _summary(self, row, improved):
        parts = [f"epoch {row['epoch']}"]
        for key in ("loss", "val_loss", "val_miou"):
            if key in row:
                parts.append(f"{key} {row[key]:.4f}")
        parts.append(f"lr {row['learning_rate']:.2e}")
        parts.append(f"{row['seconds']:.0f}s")
        if improved:
            parts.append("(best)")
        return " | ".join(parts)


def confusion_metric(model):
    """The compiled `SegmentationMeanIoU` of `model`, or None."""
    for metric in model.metrics:
        for inner in [metric, *getattr(metric, "metrics", [])]:
            if isinstance(inner, SegmentationMeanIoU):
                return inner
    return None


def sync_run_folder(model, run_dir, state, monitor="val_miou"):
    """Rewrite metrics.csv, last.keras (and best.keras if it is the last epoch) from `state`.

    A kill between committing the resume state and writing these files leaves
    them one epoch behind; call this after `state.restore(model)`.
    """
    run_dir = Path(run_dir)
    write_metrics_csv(run_dir / "metrics.csv", state.rows)
    save_model_atomic(model, run_dir / "last.keras")
    best_epochs = [row["epoch"] for row in state.rows if row.get(monitor) == state.best]
    if best_epochs and best_epochs[0] == state.epoch:
        save_model_atomic(model, run_dir / "best.keras")


def save_model_atomic(model, path):
    with atomic_path(path) as temp_path:
        model.save(temp_path)


def plot_curves(rows, path):
    """Save loss and validation mIoU per epoch as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in rows]
    figure, (loss_axis, miou_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("loss", "val_loss"):
        if any(key in row for row in rows):
            loss_axis.plot(epochs, [row.get(key, np.nan) for row in rows], marker="o", label=key)
    loss_axis.set(xlabel="epoch", ylabel="loss", title="Loss")
    loss_axis.legend()
    miou_axis.plot(
        epochs, [row.get("val_miou", np.nan) for row in rows], marker="o", color="tab:green"
    )
    miou_axis.set(xlabel="epoch", ylabel="mIoU", title="Validation mIoU", ylim=(0, 1))
    miou_axis.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as temp_path:
        figure.savefig(temp_path, dpi=100)
    plt.close(figure)


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
            if getattr(config, key) != value and key not in config_lib.RESUMABLE_KEYS
        ]
        if changed:
            raise RunFolderError(
                f"run_dir {run_dir} holds a run with a different config ({', '.join(changed)}); "
                "use another run_dir or delete the folder"
            )
    config_lib.save(config, saved)
    return run_dir


def write_summary(run_dir, state):
    """Plot the curves and write summary.json from the resume state; return the summary."""
    if not state.rows:
        raise RuntimeError(f"no epoch completed in {run_dir}")
    plot_curves(state.rows, run_dir / "curves.png")
    best_row = max(state.rows, key=lambda row: row.get("val_miou", float("-inf")))
    summary = {
        "best_val_miou": best_row.get("val_miou"),
        "best_epoch": best_row["epoch"],
        "epochs": state.epoch,
        "best_checkpoint": str(run_dir / "best.keras"),
        "last_checkpoint": str(run_dir / "last.keras"),
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary
