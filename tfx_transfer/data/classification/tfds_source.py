"""`tfds`: an image classification data set from the TensorFlow Datasets catalogue."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tensorflow_datasets

from tfx_transfer.data.common import ImageData, assemble, counts_by_class, split_indices
from tfx_transfer.data.images import as_size
from tfx_transfer.data.tfds_prepare import prepare


def tfds(
    name: str,
    *,
    image_size: int | tuple[int, int],
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    validation_split: float | None = None,
    test_split: float | None = None,
    seed: int | None = None,
    download: bool = True,
) -> ImageData:
    """Loads a catalogued TFDS image classification data set, e.g. "cats_vs_dogs".

    A data set that is not yet prepared in `data_dir` is downloaded (the real
    TFDS path). Without a connection the call fails within seconds with
    `DatasetUnavailableError`, naming the data set, its download size, the
    folder it looked in and how to prepare it elsewhere. Validation and test
    sets are carved out of `split`, stratified and the same for the same seed.

    Args:
        name: str. A TFDS catalogue name with `(image, label)` supervised keys.
        image_size: int or (height, width).
        split: str. A TFDS split (slices like "train[:50%]" work).
        data_dir: path. Where TFDS keeps data sets (default: TFDS' own).
        batch_size, validation_split, test_split, seed: as in `tt.data.image_folder`.
        download: bool. False fails at once when the data set is not prepared.

    Example:

    >>> data = tt.data.tfds("cats_vs_dogs", image_size=160, validation_split=0.1)
    >>> data.class_names
    ['cat', 'dog']
    """
    builder = tensorflow_datasets.builder(name, data_dir=data_dir)
    image_key, label_key = _supervised_keys(builder, name)
    if not builder.is_prepared():
        prepare(builder, name, download)
    class_names = list(builder.info.features[label_key].names)
    labels = np.array(
        list(
            builder.as_dataset(
                split=split, decoders={image_key: tensorflow_datasets.decode.SkipDecoding()}
            )
            .map(lambda example: example[label_key])
            .as_numpy_iterator()
        ),
        dtype=np.int32,
    )
    splits = split_indices(
        labels, validation_split=validation_split, test_split=test_split, seed=seed
    )
    size = as_size(image_size)

    def pipeline(indices, shuffle):
        mask = np.zeros(len(labels), dtype=bool)
        mask[indices] = True
        data = (
            builder.as_dataset(split=split, shuffle_files=False)
            .enumerate()
            .filter(lambda index, _: tf.gather(mask, index))
            .map(
                lambda _, example: (
                    tf.image.resize(example[image_key], size),
                    tf.cast(example[label_key], tf.int32),
                ),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        )
        if shuffle:
            data = data.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
        return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    return assemble(
        pipeline, splits, class_names=class_names, class_counts=counts_by_class(labels, class_names)
    )


def _supervised_keys(builder, name: str) -> tuple[str, str]:
    keys = builder.info.supervised_keys
    if not keys or len(keys) != 2 or not all(isinstance(k, str) for k in keys):
        raise ValueError(
            f"TFDS data set {name!r} has no (image, label) supervised keys; it is not an image "
            "classification data set."
        )
    return keys
