"""The learning-rate range test (Smith, 2017; fastai's `lr_find`)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfx_transfer.core.metadata import class_info


@dataclasses.dataclass
class LRFinderResult:
    """The loss at each learning rate of the range test.

    Attributes:
        learning_rates, losses: lists of float, one per step.
        suggestion: float. A tenth of the rate where the smoothed loss is lowest.
    """

    learning_rates: list[float]
    losses: list[float]
    suggestion: float

    def plot(self, path: str | os.PathLike) -> Path:
        """Saves the loss-vs-learning-rate curve as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(6, 4))
        axes.plot(self.learning_rates, self.losses)
        axes.axvline(
            self.suggestion, color="tab:red", linestyle="--", label=f"{self.suggestion:.2g}"
        )
        axes.set(
            xscale="log", xlabel="learning rate", ylabel="training loss", title="LR range test"
        )
        axes.legend()
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return Path(path)


def lr_find(
    model: keras.Model,
    data: tf.data.Dataset,
    *,
    min_learning_rate: float = 1e-7,
    max_learning_rate: float = 10.0,
    steps: int = 100,
    optimizer: str = "adam",
) -> LRFinderResult:
    """Trains for `steps` batches with a learning rate growing geometrically from
    `min_learning_rate` to `max_learning_rate`, records the loss, stops early when
    it explodes, and puts the weights back as they were.

    Train what you will train (e.g. `tt.training.set_trainable(model, "head")`)
    before calling it.

    Example:

    >>> result = tt.training.lr_find(model, data.train)
    >>> result.suggestion, result.plot("lr_find.png")
    """
    if not 0 < min_learning_rate < max_learning_rate or steps < 2:
        raise ValueError("Need 0 < min_learning_rate < max_learning_rate and steps >= 2.")
    rates = np.geomspace(min_learning_rate, max_learning_rate, steps)
    saved = [w.numpy().copy() for w in model.weights]
    optimizer_object = keras.optimizers.get({"class_name": optimizer, "config": {}})
    metadata = class_info(model)
    model.compile(
        optimizer_object,
        keras.losses.SparseCategoricalCrossentropy(from_logits=metadata.activation is None),
    )
    recorder = _Recorder(rates)
    try:
        model.fit(data.repeat(), steps_per_epoch=steps, epochs=1, callbacks=[recorder], verbose=0)
    finally:
        for variable, value in zip(model.weights, saved):
            variable.assign(value)
    losses = np.array(recorder.losses)
    smoothed = _smooth(losses)
    best = int(np.argmin(smoothed))
    return LRFinderResult(
        learning_rates=[float(r) for r in rates[: len(losses)]],
        losses=[float(v) for v in losses],
        suggestion=float(rates[best] / 10),
    )


class _Recorder(keras.callbacks.Callback):
    def __init__(self, rates: np.ndarray) -> None:
        super().__init__()
        self.rates, self.losses, self.best, self.mean = rates, [], np.inf, 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(float(self.rates[batch]))

    def on_train_batch_end(self, batch, logs=None):
        # Keras reports the running mean of the epoch; recover this batch's loss.
        mean = float(logs["loss"])
        loss = (batch + 1) * mean - batch * self.mean
        self.mean = mean
        self.losses.append(loss)
        self.best = min(self.best, loss)
        if not np.isfinite(loss) or loss > 4 * self.best:
            self.model.stop_training = True


def _smooth(values: np.ndarray, beta: float = 0.9) -> np.ndarray:
    """Bias-corrected exponential moving average, as fastai plots it."""
    average, out = 0.0, []
    for index, value in enumerate(np.nan_to_num(values, nan=np.inf), start=1):
        average = beta * average + (1 - beta) * value
        out.append(average / (1 - beta**index))
    return np.array(out)
