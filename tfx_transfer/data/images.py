"""Reading image files: checks that tell why a file is unusable, and decoding."""

from __future__ import annotations

import os
import re

import numpy as np
import tensorflow as tf

_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


def unusable_reason(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be used as an RGB image, or None when it can.

    Decodes the file once (JPEG, PNG, GIF, BMP; grayscale, RGBA, palette and
    16-bit images are fine, they become 8-bit RGB).
    """
    try:
        data = open(path, "rb").read()
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    if not data:
        return "empty file (0 bytes)"
    if data.startswith(_JPEG_START) and _JPEG_END not in data[-64:]:
        return "truncated JPEG (no end-of-image marker)"
    try:
        tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        message = _clean(error.message or str(error))
        if "Unknown image file format" in message:
            return "not an image (unknown file format)"
        return f"corrupt image ({message})"
    return None


def decode_resize(contents: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """Encoded bytes -> float32 RGB image of `image_size` with values in 0..255."""
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return tf.image.resize(image, image_size)


def load_resize(path: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """File path -> float32 RGB image of `image_size` with values in 0..255."""
    return decode_resize(tf.io.read_file(path), image_size)


def as_size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """`64` or `(64, 48)` -> (height, width), checked."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"image_size must be an int or (height, width); got {image_size!r}.")
    return size


def _clean(message: str) -> str:
    """TensorFlow's op error without the function-node and op decorations."""
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message.strip().splitlines()[0])
    return re.sub(r"\s*\[Op:\w+\]$", "", message)


def load_images(items, image_size: tuple[int, int]):
    """Paths and/or RGB arrays (H, W, 3), or one batch array (N, H, W, 3), as a
    float32 batch (N, height, width, 3) of 0..255 pixels resized to `image_size`."""
    if isinstance(items, (str, os.PathLike)):
        items = [items]
    elif isinstance(items, np.ndarray) and items.ndim == 3:
        items = [items]
    items = list(items)
    if not items:
        raise ValueError("Expected at least one image.")
    loaded = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            if not os.path.isfile(item):
                raise FileNotFoundError(f"Image file not found: {os.fspath(item)!r}.")
            loaded.append(load_resize(tf.constant(os.fspath(item)), image_size).numpy())
            continue
        array = np.asarray(item)
        if array.ndim != 3 or array.shape[-1] != 3:
            raise ValueError(f"Expected an RGB image array (H, W, 3); got shape {array.shape}.")
        loaded.append(tf.image.resize(array.astype(np.float32), image_size).numpy())
    return np.stack(loaded)
