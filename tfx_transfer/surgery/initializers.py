"""Initial values for the columns of new classes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from tfx_transfer.data.images import load_images

KERNEL_INITS = ("glorot_uniform", "zeros", "mean", "imprint")


def new_columns(
    init: Any,
    old_kernel: np.ndarray,
    count: int,
    *,
    embeddings: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Kernel columns (features x count) for `count` new classes.

    Args:
        init: "glorot_uniform" (or any Keras initializer), "zeros", "mean" (the
            mean of the old columns) or "imprint" (from `embeddings`).
        old_kernel: features x old classes.
        count: int. Number of new classes.
        embeddings: for "imprint", one (examples x features) array per new class.
    """
    features, old = old_kernel.shape
    if init == "mean":
        return np.repeat(old_kernel.mean(axis=1, keepdims=True), count, axis=1)
    if init == "imprint":
        return _imprinted(old_kernel, embeddings)
    initializer = keras.initializers.get(init)
    # Scaled for the full, grown kernel, like a freshly built layer of that width.
    full = keras.ops.convert_to_numpy(initializer((features, old + count)))
    return full[:, old:].astype(old_kernel.dtype)


def new_biases(bias_init: Any, old_bias: np.ndarray, count: int) -> np.ndarray:
    """Biases for `count` new classes: "zeros", "mean", or a prior probability p in
    (0, 1) giving -log((1 - p) / p), as for sigmoid or focal-loss heads."""
    if bias_init == "zeros":
        value = 0.0
    elif bias_init == "mean":
        value = float(old_bias.mean())
    elif (
        isinstance(bias_init, (int, float))
        and not isinstance(bias_init, bool)
        and 0 < bias_init < 1
    ):
        value = -math.log((1 - bias_init) / bias_init)
    else:
        raise ValueError(
            f"Unknown bias_init {bias_init!r}: expected 'zeros', 'mean' or a prior probability "
            "strictly between 0 and 1."
        )
    return np.full(count, value, old_bias.dtype)


def _imprinted(old_kernel: np.ndarray, embeddings) -> np.ndarray:
    """Weight imprinting (Qi et al., 2018): each new column is the L2-normalised mean
    of the L2-normalised embeddings of its examples, scaled to the old columns'
    mean norm."""
    scale = float(np.linalg.norm(old_kernel, axis=0).mean())
    columns = []
    for class_embeddings in embeddings:
        unit = class_embeddings / np.maximum(
            np.linalg.norm(class_embeddings, axis=1, keepdims=True), 1e-12
        )
        mean = unit.mean(axis=0)
        columns.append(scale * mean / max(float(np.linalg.norm(mean)), 1e-12))
    return np.stack(columns, axis=1).astype(old_kernel.dtype)


def embed_examples(
    embedder: keras.Model, examples: Mapping[str, Any], class_names: Sequence[str]
) -> list[np.ndarray]:
    """Embeddings (examples x features) of each class's example images, in `class_names` order."""
    _check_example_names(examples, class_names, "a few images")
    size = tuple(embedder.input_shape[1:3])
    result = []
    for name in class_names:
        images = load_images(examples[name], size)
        result.append(np.asarray(embedder.predict(images, verbose=0), np.float64))
    return result


def embed_box_examples(
    detector: keras.Model, examples: Mapping[str, Any], class_names: Sequence[str]
) -> list[np.ndarray]:
    """Box-head features (examples x features) of each class's example boxes, in
    `class_names` order: `examples[name]` is (images [n, H, W, 3], boxes [n, 4] in
    the detector's box format, one box per image).

    Example:

    >>> embed_box_examples(faster_rcnn, {"kite": (images, boxes)}, ["kite"])[0].shape
    (4, 1024)
    """
    _check_example_names(examples, class_names, "(images, boxes) with one box per image")
    result = []
    for name in class_names:
        images, boxes = (np.asarray(part, np.float32) for part in examples[name])
        if images.ndim != 4 or boxes.shape != (len(images), 4):
            raise ValueError(
                f"examples[{name!r}] must be (images [n, H, W, 3], boxes [n, 4]), one box per "
                f"image; got images {images.shape} and boxes {boxes.shape}."
            )
        features = detector.roi_features(images, boxes[:, None, :])
        result.append(np.asarray(features[:, 0, :], np.float64))
    return result


def _check_example_names(examples: Mapping[str, Any], class_names, what: str) -> None:
    missing = [name for name in class_names if name not in examples]
    extra = [name for name in examples if name not in class_names]
    if missing or extra:
        raise ValueError(
            f"examples must map each new class name to {what}; "
            f"missing: {missing}, not new classes: {extra}."
        )
