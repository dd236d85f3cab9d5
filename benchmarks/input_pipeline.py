"""Input pipeline vs model: is training ever input-bound?

Measures, side by side on this machine, the images/s of `tt.data.image_folder`
(decode, resize, batch, prefetch; cache off and on; with augmentation in
`tf.data`) against the training images/s of the shipped base model
(mobilenet_v3_small at 64x64 px, batch 32): fine-tuning everything, and
training the head only. The last line is the ratio the goal refers to:
pipeline (uncached, augmented) / full fine-tuning, goal >= 3.

    python benchmarks/input_pipeline.py
"""

from __future__ import annotations

import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import tfx_transfer as tt
from tfx_transfer.data import shapes

BATCH = 32
PER_CLASS = 24  # 92 classes -> 2,208 PNG files


def images_per_second(dataset: tf.data.Dataset, epochs: int = 2) -> float:
    """Iterates whole epochs after a warm-up epoch."""
    for _ in dataset:
        pass
    started, count = time.perf_counter(), 0
    for _ in range(epochs):
        for images, _ in dataset:
            count += int(images.shape[0])
    return count / (time.perf_counter() - started)


def training_images_per_second(model: keras.Model, steps: int = 30) -> float:
    x = np.random.default_rng(0).uniform(0, 255, (BATCH * steps, 64, 64, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, model.output_shape[-1], len(x))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[: BATCH * 3], y[: BATCH * 3], batch_size=BATCH, epochs=1, verbose=0)  # trace
    started = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    return len(x) / (time.perf_counter() - started)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        shapes.write_image_folder(folder, shapes.ALL_CLASSES, PER_CLASS)
        plain = tt.data.image_folder(folder, image_size=64, batch_size=BATCH, seed=0)
        cached = tt.data.image_folder(
            folder, image_size=64, batch_size=BATCH, seed=0, cache="memory"
        )
        augmentation = {"flip": 1, "rotation": 0.05, "zoom": 0.1}
        augmented = tt.data.augment(plain.train, augmentation, seed=0)
        pipeline = {
            "pipeline, no cache": images_per_second(plain.train),
            "pipeline, cache in memory": images_per_second(cached.train),
            "pipeline, no cache, augmentation in tf.data": images_per_second(augmented),
        }

    full = tt.demo.base_model()
    full.trainable = True
    head_only = tt.demo.base_model()
    for layer in head_only.layers:
        layer.trainable = layer.name.startswith(("head_", "predictions"))
    model = {
        "training, everything (fine-tuning)": training_images_per_second(full),
        "training, head only (frozen backbone)": training_images_per_second(head_only),
    }
    inputs = keras.Input((64, 64, 3))
    with_layers = tt.demo.base_model()
    with_layers.trainable = True
    augmenting_model = keras.Model(
        inputs, with_layers(tt.data.augmentation_layers(augmentation, seed=0)(inputs))
    )
    model["training, everything, augmentation as model layers"] = training_images_per_second(
        augmenting_model
    )

    for name, value in {**pipeline, **model}.items():
        print(f"{name:<55} {value:8.0f} images/s")
    ratio = (
        pipeline["pipeline, no cache, augmentation in tf.data"]
        / model["training, everything (fine-tuning)"]
    )
    head_ratio = (
        pipeline["pipeline, no cache, augmentation in tf.data"]
        / model["training, head only (frozen backbone)"]
    )
    print(f"pipeline / head-only training: {head_ratio:.1f}x")
    print(f"pipeline / fine-tuning: {ratio:.1f}x (goal >= 3)")


if __name__ == "__main__":
    main()
