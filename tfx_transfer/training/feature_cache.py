"""Training a head on cached backbone features.

When only the head trains and the backbone is frozen (and the data is not
augmented), every epoch recomputes the same backbone features. Computing them
once and training the head on them gives the same head, many times faster.
Within `reuse_cached_features()` (a hyperparameter search), batches seen
before by an extractor with the same weights reuse their features.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfx_transfer.training.unfreeze import find_backbone

# Steps on cached features are so cheap that Keras' per-step overhead dominates;
# running several per call of the training function removes most of it.
CACHED_STEPS_PER_EXECUTION = 16


def split_at_backbone(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(feature extractor, head) of a classifier; the head shares the model's layers,
    so training it trains `model`."""
    backbone = find_backbone(model)
    position = model.layers.index(backbone)
    head_layers = model.layers[position + 1 :]
    if not head_layers:
        raise ValueError(f"Model {model.name!r} has no layers after its backbone.")
    features = head_layers[0].input
    extractor = keras.Model(model.inputs, features, name="feature_extractor")
    inputs = keras.Input(features.shape[1:], name="features")
    x = inputs
    for layer in head_layers:
        x = layer(x)
    return extractor, keras.Model(inputs, x, name="head")


def cache_features(
    extractor: keras.Model,
    data: tf.data.Dataset,
    *,
    shuffle_seed: int | None = None,
    description: str = "caching features",
    progress: bool = True,
) -> tf.data.Dataset:
    """Runs `extractor` once over `data` (batches of (images, labels)) and returns
    batches of (features, labels) held in memory: the same batches in the same
    order, or, with `shuffle_seed`, reshuffled every epoch into batches of the
    original size. `progress=False` hides the progress bar."""
    features, labels = [], []
    weights = _fingerprint(extractor.weights) if _reused is not None else None
    for images, batch_labels in tqdm(data, desc=description, leave=False, disable=not progress):
        if weights is None:
            features.append(extractor(images, training=False).numpy())
        else:
            key = (weights, _fingerprint([images]))
            if key not in _reused:
                _reused[key] = extractor(images, training=False).numpy()
            features.append(_reused[key])
        labels.append(np.asarray(batch_labels))
    sizes = [len(f) for f in features]
    features, labels = np.concatenate(features), np.concatenate(labels)
    if shuffle_seed is None:
        return _rebatch(features, labels, sizes)
    return (
        tf.data.Dataset.from_tensor_slices((features, labels))
        .shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
        .batch(sizes[0])
    )


_reused: dict[tuple[str, str], np.ndarray] | None = None


@contextlib.contextmanager
def reuse_cached_features() -> Iterator[None]:
    """Within this block, `cache_features` reuses the features of every batch it has
    seen before with an extractor of the same weights (keyed by the bytes of both),
    so the trials of a search that keep the backbone frozen compute them once.
    The data is still read as before (its shuffling advances the same way).

    Example:

    >>> with reuse_cached_features():
    ...     for learning_rate in (1e-3, 3e-3):
    ...         tt.fine_tune(build(), data, stages=[Stage(cache_features=True,
    ...                                                   learning_rate=learning_rate)])
    """
    global _reused
    outer = _reused
    _reused = {} if outer is None else outer
    try:
        yield
    finally:
        _reused = outer


def _fingerprint(arrays) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(array))
        digest.update(str((value.shape, value.dtype)).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _rebatch(features: np.ndarray, labels: np.ndarray, sizes: list[int]) -> tf.data.Dataset:
    """The cached arrays, cut into the original batches (same sizes, same order)."""
    data = tf.data.Dataset.from_tensor_slices((features, labels))
    if all(size == sizes[0] for size in sizes[:-1]) and sizes[-1] <= sizes[0]:
        return data.batch(sizes[0])
    edges = np.cumsum([0, *sizes])
    starts = tf.data.Dataset.from_tensor_slices((edges[:-1], edges[1:]))
    return starts.map(lambda a, b: (features[a:b], labels[a:b]))
