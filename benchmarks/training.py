"""Training speed: the toolkit's overhead, and what cached features buy.

1. `tt.fine_tune` vs plain `model.compile` + `model.fit` on the same model, data
   and batch size (head stage on the shipped base model): images/s ratio over the
   epochs after the first, goal >= 0.97; and each side's start-up (loading the
   model, compiling, tracing: the first epoch's excess over a later one).
2. Head training on cached backbone features vs full forward passes through a
   frozen backbone (mobilenet_v2 at 96x96 with the 1024-unit head and 90 classes;
   random weights, which do not change the timing): time per epoch ratio,
   goal >= 10, and the difference between the two trained heads.

    python benchmarks/training.py
"""

from __future__ import annotations

import statistics
import time

import keras
import numpy as np
import tensorflow as tf

import tfx_transfer as tt
from tfx_transfer.data import shapes
from tfx_transfer.training import Stage
from tfx_transfer.training.feature_cache import (
    CACHED_STEPS_PER_EXECUTION,
    cache_features,
    split_at_backbone,
)

CACHED_EPOCH_FACTOR = 10
EPOCHS = 3
OVERHEAD_EPOCHS = 8
REPEATS = 5


def data(size: int = 64) -> tf.data.Dataset:
    images, labels = shapes.arrays(shapes.BASE_CLASSES, 12, split="train", image_size=size)
    return tf.data.Dataset.from_tensor_slices((images.astype("float32"), labels)).batch(32).cache()


def head_only(model: keras.Model) -> keras.Model:
    tt.training.set_trainable(model, "head")
    return model


def heads_difference(train: tf.data.Dataset) -> float:
    """Trains the base model's head both ways (dropout off) and compares the results."""

    def build():
        keras.utils.set_random_seed(0)
        model = head_only(tt.demo.base_model())
        model.get_layer("head_dropout").rate = 0.0
        return model

    def compile_(model):
        model.compile(
            keras.optimizers.Adam(1e-3),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )

    uncached, cached = build(), build()
    compile_(uncached)
    uncached.fit(train, epochs=EPOCHS, verbose=0)
    extractor, head = split_at_backbone(cached)
    compile_(head)
    head.fit(cache_features(extractor, train), epochs=EPOCHS, verbose=0)
    return max(
        float(np.max(np.abs(a.numpy() - b.numpy())))
        for a, b in zip(
            uncached.get_layer("predictions").weights, cached.get_layer("predictions").weights
        )
    )


class EpochTimes(keras.callbacks.Callback):
    """Wall seconds of each epoch of a `fit`."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._started)


def steady_and_startup(fit) -> tuple[float, float]:
    """(seconds of the epochs after the first, start-up seconds) of `fit(callback)`:
    start-up is the whole run minus OVERHEAD_EPOCHS steady epochs."""
    epochs = EpochTimes()
    total = timed(lambda: fit(epochs))
    steady = sum(epochs.seconds[1:])
    return steady, total - steady / (OVERHEAD_EPOCHS - 1) * OVERHEAD_EPOCHS


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    train = data()
    steady_images = sum(int(x.shape[0]) for x, _ in train) * (OVERHEAD_EPOCHS - 1)
    for _ in train:  # fill the cache
        pass

    def plain_fit(callback):
        model = head_only(tt.demo.base_model())
        model.compile(
            keras.optimizers.Adam(1e-3),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        model.fit(train, epochs=OVERHEAD_EPOCHS, verbose=0, callbacks=[callback])

    def toolkit_fit(callback):
        tt.fine_tune(
            tt.demo.base_model(),
            train,
            stages=[Stage(epochs=OVERHEAD_EPOCHS)],
            callbacks=[callback],
            verbose=0,
        )

    # Both sides load, compile and trace once per run, as a real stage does; alternate
    # them and keep each side's median of REPEATS runs.
    plain_runs, toolkit_runs = [], []
    for _ in range(REPEATS):
        plain_runs.append(steady_and_startup(plain_fit))
        toolkit_runs.append(steady_and_startup(toolkit_fit))
    plain_seconds, plain_startup = (statistics.median(run) for run in zip(*plain_runs))
    toolkit_seconds, toolkit_startup = (statistics.median(run) for run in zip(*toolkit_runs))

    train = data(96)

    def frozen_classifier():
        keras.utils.set_random_seed(0)
        return tt.build_classifier(
            "mobilenet_v2", 90, weights=None, input_shape=(96, 96, 3), dropout=0.0
        )

    uncached, cached = frozen_classifier(), frozen_classifier()
    uncached.compile(
        keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    uncached.fit(train, verbose=0)  # likewise
    uncached_seconds = timed(lambda: uncached.fit(train, epochs=EPOCHS, verbose=0)) / EPOCHS
    extractor, head = split_at_backbone(cached)
    caching_seconds = timed(lambda: globals().update(features=cache_features(extractor, train)))
    features = globals()["features"]
    head.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=CACHED_STEPS_PER_EXECUTION,  # as fine_tune does
    )
    head.fit(features, verbose=0)  # trace the multi-step function outside the timing
    # A cached epoch takes a fraction of a second, so fit's fixed start-up cost (paid once per
    # stage, not per epoch) is spread over more epochs than on the uncached side.
    cached_epochs = CACHED_EPOCH_FACTOR * EPOCHS
    cached_seconds = (
        timed(lambda: head.fit(features, epochs=cached_epochs, verbose=0)) / cached_epochs
    )
    difference = heads_difference(data())
    print(
        f"plain model.fit: {steady_images / plain_seconds:8.0f} images/s after the first epoch,"
        f" start-up {plain_startup:.2f} s"
    )
    print(
        f"tt.fine_tune:    {steady_images / toolkit_seconds:8.0f} images/s after the first epoch,"
        f" start-up {toolkit_startup:.2f} s"
    )
    print(f"head epoch, full forward passes: {uncached_seconds:.3f} s")
    print(
        f"head epoch, cached features:     {cached_seconds:.3f} s (one-time caching pass {caching_seconds:.2f} s)"
    )
    print(f"base model head trained both ways, max weight difference: {difference:.2e}")
    print(
        f"cached / uncached epoch speed-up: {uncached_seconds / cached_seconds:.1f}x (goal >= 10)"
    )
    print(f"fine_tune / plain fit: {plain_seconds / toolkit_seconds:.3f} (goal >= 0.97)")


if __name__ == "__main__":
    main()
