"""Pixel normalisation layers, so that every model takes raw 0..255 RGB pixels."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# Modes of keras.applications.imagenet_utils.preprocess_input.
MODES = ("caffe", "tf", "torch", "none")
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="tfx_transfer")
class ImagePreprocessing(keras.layers.Layer):
    """Maps raw RGB pixels in 0..255 to what a backbone expects.

    Args:
        mode: str. One of `MODES`, as in `keras.applications` `preprocess_input`:
            "caffe" (RGB -> BGR, minus the ImageNet mean; VGG, ResNet v1),
            "tf" (scale to -1..1; ResNet v2, Inception, Xception, MobileNet v1/v2),
            "torch" (scale to 0..1, then ImageNet mean/std; DenseNet),
            "none" (identity; backbones that normalise inside, e.g. EfficientNet).

    Example:

    >>> layer = ImagePreprocessing("tf")
    >>> layer(np.full((1, 2, 2, 3), 255.0)).numpy().max()
    1.0
    """

    def __init__(self, mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"Unknown preprocessing mode {mode!r}; expected one of {MODES}.")
        self.mode = mode

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.array(IMAGENET_MEAN_RGB, dtype=x.dtype)
            std = ops.array(IMAGENET_STD_RGB, dtype=x.dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.array(IMAGENET_MEAN_BGR, dtype=x.dtype)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}
