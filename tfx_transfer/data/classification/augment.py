"""Augmentation by name and strength, in `tf.data` or as model layers.

Per-image transforms are Keras layers (`RandomFlip`, `RandomRotation`,
`RandomTranslation`, `RandomZoom`, `RandomContrast`, `RandomBrightness`,
`RandAugment`); `mixup` and `cutmix` mix pairs of images and their labels, so
they need one-hot labels and run in `tf.data` only. Keras' random layers do
nothing when `training` is false, so augmentation never touches evaluation,
prediction or exported models.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import tensorflow as tf

from tfx_transfer.data.classification.augment_options import IMAGE_AUGMENTATIONS, LABEL_MIXING

VALUE_RANGE = (0.0, 255.0)


def augmentation_layers(spec: Mapping[str, float], *, seed: int | None = None) -> keras.Sequential:
    """A `keras.Sequential` of the per-image augmentations in `spec`.

    Args:
        spec: {name: strength}. flip (any strength: horizontal flips), rotation
            (fraction of a full turn), translation and zoom (fraction of the
            size), contrast and brightness (factor), randaugment (magnitude 0..1).
        seed: int. Seeds every layer.

    Example:

    >>> augment = tt.data.augmentation_layers({"flip": 1, "rotation": 0.05, "zoom": 0.1})
    >>> x = augment(images)                  # as the first layers of a model
    """
    unknown = sorted(set(spec) - set(IMAGE_AUGMENTATIONS) - set(LABEL_MIXING))
    if unknown:
        raise ValueError(
            f"Unknown augmentations {unknown}; expected some of "
            f"{list(IMAGE_AUGMENTATIONS) + list(LABEL_MIXING)}."
        )
    layers = []
    for name in IMAGE_AUGMENTATIONS:
        if name not in spec:
            continue
        strength = float(spec[name])
        if strength < 0:
            raise ValueError(f"Augmentation strength must be >= 0; got {name}={strength}.")
        layers.append(_layer(name, strength, seed))
    return keras.Sequential(layers, name="augmentation")


def augment(
    data: tf.data.Dataset,
    spec: Mapping[str, float],
    *,
    num_classes: int | None = None,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Applies `spec` to a training `tf.data.Dataset` of (images, labels) batches.

    With `mixup` (strength: Beta alpha) or `cutmix` (strength: Beta alpha),
    integer labels become one-hot rows of `num_classes` (use a loss for
    one-hot labels, e.g. `CategoricalCrossentropy`). Apply it to training data
    only.

    Example:

    >>> train = tt.data.augment(data.train, {"flip": 1, "mixup": 0.2}, num_classes=4, seed=0)
    """
    image_layers = augmentation_layers(spec, seed=seed)
    mixers = [_mixer(name, float(spec[name]), seed) for name in LABEL_MIXING if name in spec]
    if mixers and num_classes is None:
        raise ValueError("mixup and cutmix mix labels too: pass num_classes=.")

    def apply(images, labels):
        images = image_layers(images, training=True) if image_layers.layers else images
        if mixers:
            if labels.shape.rank == 1:
                labels = tf.one_hot(labels, num_classes)
            for mixer in mixers:
                mixed = mixer({"images": images, "labels": labels}, training=True)
                images, labels = mixed["images"], mixed["labels"]
        return images, labels

    return data.map(apply, num_parallel_calls=tf.data.AUTOTUNE)


def _layer(name: str, strength: float, seed: int | None) -> keras.layers.Layer:
    if name == "flip":
        return keras.layers.RandomFlip("horizontal", seed=seed)
    if name == "rotation":
        return keras.layers.RandomRotation(strength, fill_mode="reflect", seed=seed)
    if name == "translation":
        return keras.layers.RandomTranslation(strength, strength, fill_mode="reflect", seed=seed)
    if name == "zoom":
        return keras.layers.RandomZoom(strength, fill_mode="reflect", seed=seed)
    if name == "contrast":
        return keras.layers.RandomContrast(strength, value_range=VALUE_RANGE, seed=seed)
    if name == "brightness":
        return keras.layers.RandomBrightness(strength, value_range=VALUE_RANGE, seed=seed)
    return keras.layers.RandAugment(value_range=VALUE_RANGE, factor=strength, seed=seed)


def _mixer(name: str, strength: float, seed: int | None) -> keras.layers.Layer:
    if name == "mixup":
        return keras.layers.MixUp(alpha=strength, seed=seed)
    return keras.layers.CutMix(factor=strength, seed=seed)
