"""`predict_images`: the quick "does it work" check on files or arrays."""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
import numpy as np

from tfx_transfer.core.metadata import class_info
from tfx_transfer.data.images import load_images

ImageInput = str | os.PathLike | np.ndarray


def predict_images(
    model: keras.Model,
    paths_or_arrays: ImageInput | Sequence[ImageInput],
    top_k: int = 5,
    *,
    batch_size: int = 32,
) -> list[list[tuple[str, float]]]:
    """Classifies images and returns the `top_k` (class name, probability) pairs of each.

    Args:
        model: a classifier (its input size is used to resize the images).
        paths_or_arrays: an image path, an RGB array (H, W, 3) or a batch
            (N, H, W, 3) of 0..255 pixels, or a list of paths and arrays.
        top_k: int. How many classes to return per image.
        batch_size: int. Batch size for `model.predict`.

    Returns:
        One list per image, best class first.

    Example:

    >>> tt.predict_images(model, ["rose.jpg"], top_k=2)
    [[('rose', 0.91), ('tulip', 0.05)]]
    """
    metadata = class_info(model)
    height, width = model.input_shape[1:3]
    if height is None or width is None:
        raise ValueError(f"Model {model.name!r} has no fixed input size to resize images to.")
    images = load_images(paths_or_arrays, (height, width))
    outputs = model.predict(images, batch_size=batch_size, verbose=0)
    if metadata.activation is None:
        convert = keras.ops.sigmoid if metadata.multi_label else keras.ops.softmax
        outputs = keras.ops.convert_to_numpy(convert(outputs))
    k = min(int(top_k), metadata.num_classes)
    best = np.argsort(-outputs, axis=1, kind="stable")[:, :k]
    return [
        [(metadata.class_names[i], float(row[i])) for i in indices]
        for row, indices in zip(outputs, best)
    ]
