"""The learning-rate schedule of DeepLab (warm-up, then poly decay) and the optimisers."""

import math

import keras
from keras import ops

# Values of the config keys `optimizer` and `lr_schedule`.
OPTIMIZERS = ("adamw", "adam", "sgd")
LR_SCHEDULES = ("poly", "cosine", "constant")


@keras.saving.register_keras_serializable(package="faceparsing")
class WarmupPolyDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then the DeepLab "poly" decay `lr * (1 - t/T) ** power`.

    Args:
        peak_learning_rate: float. Rate reached at the end of warm-up.
        total_steps: int. Steps of the whole run (warm-up included).
        power: float. Poly exponent; the paper uses 0.9. Defaults to 0.9.
        warmup_steps: int. Linear warm-up length. Defaults to 0.
        kind: str. "poly", "cosine" or "constant" after warm-up. Defaults to "poly".
    """

    def __init__(self, peak_learning_rate, total_steps, power=0.9, warmup_steps=0, kind="poly"):
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(max(total_steps, 1))
        self.power = float(power)
        self.warmup_steps = int(warmup_steps)
        self.kind = kind

    def __call__(self, step):
        step = ops.cast(step, "float32")
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        if self.kind == "poly":
            factor = ops.power(1.0 - progress, self.power)
        elif self.kind == "cosine":
            factor = 0.5 * (1.0 + ops.cos(math.pi * progress))
        else:
            factor = ops.ones_like(progress)
        if self.warmup_steps > 0:
            warmup = ops.minimum((step + 1.0) / self.warmup_steps, 1.0)
            factor = ops.where(step < self.warmup_steps, warmup, factor)
        return self.peak_learning_rate * factor

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "power": self.power,
            "warmup_steps": self.warmup_steps,
            "kind": self.kind,
        }


def build_optimizer(config, steps_per_epoch):
    """Return the optimiser named by `config.optimizer` with the configured schedule."""
    schedule = WarmupPolyDecay(
        config.learning_rate,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=int(config.warmup_epochs * steps_per_epoch),
        kind=config.lr_schedule,
    )
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
