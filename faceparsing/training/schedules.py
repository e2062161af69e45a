"""The learning-rate schedule of DeepLab (warm-up, then poly decay) and the optimisers."""

import math

import keras
from keras import ops

# Values of the config keys `optimizer` and `lr_schedule`.


@keras.saving.register_keras_serializable(package="faceparsing")
class WarmupPolyDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then the DeepLab "poly" decay `lr * (1 - t/T) ** power`.

    A run whose length was changed after it started (`--epochs` raised on a
    rerun) gets an extension `(start, end, rate)`: from step `start` on, the
    rate decays with the same shape from `rate`, the rate of the last step
    trained before `start`, to the schedule's end value at step `end`. So the
    learning rate never jumps when a run is extended.

    Args:
        peak_learning_rate: float. Rate reached at the end of warm-up.
        total_steps: int. Steps of the whole run as first planned (warm-up included).
        power: float. Poly exponent; the paper uses 0.9. Defaults to 0.9.
        warmup_steps: int. Linear warm-up length. Defaults to 0.
        kind: str. "poly", "cosine" or "constant" after warm-up. Defaults to "poly".
        extensions: list of [start_step, end_step, start_rate]. Defaults to none.
    """

    def __init__(
        self, peak_learning_rate, total_steps, power=0.9, warmup_steps=0, kind="poly",
        extensions=(),
    ):  # fmt: skip
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(max(total_steps, 1))
        self.power = float(power)
        self.warmup_steps = int(warmup_steps)
        self.kind = kind
        self.extensions = [[int(a), int(b), float(rate)] for a, b, rate in extensions]

    def _shape(self, progress):
        """The decay factor at `progress` in [0, 1]: 1 at the start, the end value at 1."""
        if self.kind == "poly":
            return ops.power(1.0 - progress, self.power)
        if self.kind == "cosine":
            return 0.5 * (1.0 + ops.cos(math.pi * progress))
        return ops.ones_like(progress)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        factor = self._shape(progress)
        if self.warmup_steps > 0:
            warmup = ops.minimum((step + 1.0) / self.warmup_steps, 1.0)
            factor = ops.where(step < self.warmup_steps, warmup, factor)
        rate = self.peak_learning_rate * factor
        for start, end, start_rate in self.extensions:
            # Progress counted from the last step trained before `start`, so
            # the rate goes on from exactly where it was.
            anchor = float(start - 1)
            progress = ops.clip((step - anchor) / float(max(end - anchor, 1)), 0.0, 1.0)
            rate = ops.where(step >= start, start_rate * self._shape(progress), rate)
        return rate

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "power": self.power,
            "warmup_steps": self.warmup_steps,
            "kind": self.kind,
            "extensions": self.extensions,
        }


def build_schedule(config, steps_per_epoch, segments=None):
    """The run's schedule; `segments` lists [start_epoch, end_epoch] of each planned length.

    The first segment is the run as first planned; each later one extends it
    (see `WarmupPolyDecay`). Defaults to one segment, [0, config.epochs].
    """
    segments = segments or [[0, config.epochs]]
    schedule = WarmupPolyDecay(
        config.learning_rate,
        total_steps=segments[0][1] * steps_per_epoch,
        warmup_steps=int(config.warmup_epochs * steps_per_epoch),
        kind=config.lr_schedule,
    )
    for start_epoch, end_epoch in segments[1:]:
        start = start_epoch * steps_per_epoch
        start_rate = float(ops.convert_to_numpy(schedule(max(start - 1, 0))))
        schedule = WarmupPolyDecay.from_config(
            {
                **schedule.get_config(),
                "extensions": [
                    *schedule.extensions,
                    [start, end_epoch * steps_per_epoch, start_rate],
                ],
            }
        )
    return schedule


def build_optimizer(config, steps_per_epoch, segments=None):
    """Return the optimiser named by `config.optimizer` with the configured schedule."""
    schedule = build_schedule(config, steps_per_epoch, segments)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(
            schedule, momentum=config.momentum, weight_decay=config.weight_decay or None
        )
    if config.optimizer == "adam":
        return keras.optimizers.Adam(schedule)
    return keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)


def current_learning_rate(optimizer):
    rate = optimizer.learning_rate
    return float(ops.convert_to_numpy(rate))
