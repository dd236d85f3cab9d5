"""Learning-rate schedules that plug into any Keras optimizer.

Warm-up + cosine and step decay are Keras' own schedules under short names;
the cyclical (Smith, 2017) and one-cycle (Smith, 2018) policies are
`LearningRateSchedule`s of ours, serializable with the model's optimizer.

Example:

>>> schedule = tt.training.warmup_cosine(1e-3, total_steps=1000, warmup_steps=100)
>>> model.compile(keras.optimizers.Adam(schedule), ...)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

CYCLICAL_MODES = ("triangular", "triangular2", "exp_range")


def warmup_cosine(
    peak_learning_rate: float,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    initial_learning_rate: float = 0.0,
    final_learning_rate: float = 0.0,
) -> keras.optimizers.schedules.CosineDecay:
    """Linear warm-up from `initial_learning_rate` to the peak over `warmup_steps`,
    then cosine decay to `final_learning_rate` at `total_steps`."""
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"Need 0 <= warmup_steps < total_steps; got {warmup_steps}, {total_steps}."
        )
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate if warmup_steps else peak_learning_rate,
        decay_steps=total_steps - warmup_steps,
        alpha=final_learning_rate / peak_learning_rate,
        warmup_target=peak_learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def step_decay(
    learning_rate: float, boundaries: Sequence[int], factor: float = 0.1
) -> keras.optimizers.schedules.PiecewiseConstantDecay:
    """`learning_rate`, multiplied by `factor` at each step in `boundaries`."""
    values = [learning_rate * factor**i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(list(boundaries), values)


@keras.saving.register_keras_serializable(package="tfx_transfer")
class CyclicalLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Cyclical learning rate (Smith, 2017): triangles between `base` and `maximum`.

    Args:
        base: float. Lowest learning rate.
        maximum: float. Highest learning rate (of the first cycle).
        step_size: int. Steps from low to high (half a cycle).
        mode: "triangular" (constant height), "triangular2" (height halves
            every cycle) or "exp_range" (height times gamma**step).
        gamma: float. For "exp_range".
    """

    def __init__(
        self,
        base: float,
        maximum: float,
        step_size: int,
        mode: str = "triangular",
        gamma: float = 1.0,
    ) -> None:
        if mode not in CYCLICAL_MODES:
            raise ValueError(f"Unknown mode {mode!r}; expected one of {CYCLICAL_MODES}.")
        if step_size <= 0 or maximum < base:
            raise ValueError(
                f"Need step_size > 0 and maximum >= base; got {step_size}, {base}, {maximum}."
            )
        self.base, self.maximum, self.step_size = float(base), float(maximum), int(step_size)
        self.mode, self.gamma = mode, float(gamma)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        cycle = ops.floor(1.0 + step / (2.0 * self.step_size))
        x = ops.abs(step / self.step_size - 2.0 * cycle + 1.0)
        height = (self.maximum - self.base) * ops.maximum(0.0, 1.0 - x)
        if self.mode == "triangular2":
            height = height / ops.power(2.0, cycle - 1.0)
        elif self.mode == "exp_range":
            height = height * ops.power(self.gamma, step)
        return self.base + height

    def get_config(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "maximum": self.maximum,
            "step_size": self.step_size,
            "mode": self.mode,
            "gamma": self.gamma,
        }


@keras.saving.register_keras_serializable(package="tfx_transfer")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle policy (Smith, 2018; as in fastai): cosine rise from
    `maximum / div_factor` to `maximum` over `warmup_fraction` of the steps, then
    cosine fall to `maximum / (div_factor * final_div_factor)`."""

    def __init__(
        self,
        maximum: float,
        total_steps: int,
        warmup_fraction: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ) -> None:
        if total_steps <= 1 or not 0 < warmup_fraction < 1:
            raise ValueError(
                f"Need total_steps > 1 and 0 < warmup_fraction < 1; got {total_steps}, {warmup_fraction}."
            )
        self.maximum, self.total_steps = float(maximum), int(total_steps)
        self.warmup_fraction = float(warmup_fraction)
        self.div_factor, self.final_div_factor = float(div_factor), float(final_div_factor)

    def __call__(self, step):
        step = ops.minimum(ops.cast(step, "float32"), float(self.total_steps))
        start = self.maximum / self.div_factor
        end = start / self.final_div_factor
        rise = max(1.0, self.warmup_fraction * self.total_steps)
        fall = max(1.0, self.total_steps - rise)

        def cosine(begin, finish, fraction):
            return finish + (begin - finish) * (1.0 + ops.cos(math.pi * fraction)) / 2.0

        rising = cosine(start, self.maximum, ops.minimum(step / rise, 1.0))
        falling = cosine(self.maximum, end, ops.clip((step - rise) / fall, 0.0, 1.0))
        return ops.where(step < rise, rising, falling)

    def get_config(self) -> dict[str, Any]:
        return {
            "maximum": self.maximum,
            "total_steps": self.total_steps,
            "warmup_fraction": self.warmup_fraction,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }
