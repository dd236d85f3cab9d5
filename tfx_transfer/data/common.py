"""What every labelled image source shares: file checks, stratified splits and
the `tf.data` pipeline (parallel decode and resize, optional cache, prefetch)."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfx_transfer.data.images import load_resize, unusable_reason


class UnusableImagesError(ValueError):
    """Raised in strict mode when some files are not usable images."""


@dataclasses.dataclass
class ImageData:
    """Labelled images, ready for `model.fit`.

    Attributes:
        train: tf.data.Dataset of (float32 images 0..255, labels) batches; labels
            are int32 class indices, or float32 multi-hot rows for multi-label data.
        validation: the same for the validation split, or None.
        test: the same for the test split, or None.
        class_names: list of str. Label k is class_names[k].
        class_counts: dict. Class name -> number of usable images (all splits).
        skipped: list of (path, reason) for files that were not usable images.
        multi_label: bool. Whether an image can have several classes.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    test: tf.data.Dataset | None
    class_names: list[str]
    class_counts: dict[str, int]
    skipped: list[tuple[str, str]]
    multi_label: bool = False


def check_files(
    paths: Sequence[str], *, strict: bool, source: str, missing: dict[str, str] | None = None
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Returns (usable mask, skipped (path, reason) list) for `paths`.

    `missing` maps paths known to be missing to a reason (e.g. the manifest
    line). Unusable files raise `UnusableImagesError` in strict mode; otherwise
    one warning says how many were skipped.
    """
    missing = missing or {}
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        checks = pool.map(lambda p: missing.get(p) or unusable_reason(p), paths)
        reasons = list(tqdm(checks, total=len(paths), desc=f"Checking {source}", leave=False))
    skipped = [(path, reason) for path, reason in zip(paths, reasons) if reason]
    if skipped and strict:
        listing = "\n".join(f"  {path}: {reason}" for path, reason in skipped)
        raise UnusableImagesError(f"{len(skipped)} unusable files in {source}:\n{listing}")
    if skipped:
        warnings.warn(
            f"Skipped {len(skipped)} of {len(paths)} files in {source} that are not usable "
            f"images (first: {skipped[0][0]}: {skipped[0][1]}); see the .skipped list.",
            stacklevel=3,
        )
    return np.array([reason is None for reason in reasons], dtype=bool), skipped


def split_indices(
    labels: np.ndarray,
    *,
    validation_split: float | None,
    test_split: float | None,
    seed: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified (per class) train/validation/test indices, the same for the same seed.

    Multi-hot labels are stratified by their first class.
    """
    for name, value in (("validation_split", validation_split), ("test_split", test_split)):
        if value is not None and not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be in (0, 1); got {value}.")
    held_out = (validation_split or 0.0) + (test_split or 0.0)
    if held_out >= 1.0:
        raise ValueError(
            f"validation_split + test_split must leave images to train on; got {held_out}."
        )
    strata = labels.argmax(axis=1) if labels.ndim == 2 else labels
    rng = np.random.default_rng(0 if seed is None else seed)
    train, validation, test = [], [], []
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        members = members[rng.permutation(len(members))]
        n_validation = int(round(len(members) * (validation_split or 0.0)))
        n_test = int(round(len(members) * (test_split or 0.0)))
        if (
            (validation_split and n_validation == 0)
            or (test_split and n_test == 0)
            or (n_validation + n_test >= len(members))
        ):
            raise ValueError(
                f"Class {int(stratum)} has {len(members)} usable images, too few to split with "
                f"validation_split={validation_split}, test_split={test_split}."
            )
        validation += members[:n_validation].tolist()
        test += members[n_validation : n_validation + n_test].tolist()
        train += members[n_validation + n_test :].tolist()
    return tuple(np.sort(np.array(part, dtype=np.int64)) for part in (train, validation, test))


def file_pipeline(
    paths: Sequence[str],
    labels: np.ndarray,
    *,
    image_size: tuple[int, int],
    batch_size: int,
    shuffle: bool,
    seed: int | None,
    cache: str | None = None,
    deterministic: bool = True,
) -> tf.data.Dataset:
    """(path, label) pairs -> batches of (float32 images, labels): parallel decode,
    optional cache ("memory" or a file path) after decoding, shuffle, batch, prefetch."""
    data = tf.data.Dataset.from_tensor_slices((list(paths), labels))
    data = data.map(
        lambda path, label: (load_resize(path, image_size), label),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    return _finish(data, len(paths), batch_size=batch_size, shuffle=shuffle, seed=seed, cache=cache)


def array_pipeline(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int | None,
) -> tf.data.Dataset:
    """In-memory images (any dtype, 0..255) -> batches of (float32 images, labels)."""
    data = tf.data.Dataset.from_tensor_slices((images, labels))
    data = _finish(data, len(labels), batch_size=batch_size, shuffle=shuffle, seed=seed, cache=None)
    return data.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)


def _finish(data, count, *, batch_size, shuffle, seed, cache):
    if cache == "memory":
        data = data.cache()
    elif cache:
        data = data.cache(str(cache))
    if shuffle:
        data = data.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def assemble(
    pipeline,
    splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    class_names: Sequence[str],
    class_counts: dict[str, int],
    skipped: list[tuple[str, str]] | None = None,
    multi_label: bool = False,
) -> ImageData:
    """`ImageData` from `pipeline(indices, shuffle)` and (train, validation, test)
    indices; an empty split becomes None."""
    train, validation, test = splits
    return ImageData(
        train=pipeline(train, True),
        validation=pipeline(validation, False) if len(validation) else None,
        test=pipeline(test, False) if len(test) else None,
        class_names=list(class_names),
        class_counts=class_counts,
        skipped=skipped or [],
        multi_label=multi_label,
    )


def to_one_hot(data: tf.data.Dataset, num_classes: int) -> tf.data.Dataset:
    """(images, int labels) batches -> (images, float32 one-hot labels), e.g. for
    label smoothing with `CategoricalCrossentropy(label_smoothing=0.1)`."""
    return data.map(
        lambda images, labels: (images, tf.one_hot(labels, num_classes)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def counts_by_class(labels: np.ndarray, class_names: Sequence[str]) -> dict[str, int]:
    """Images per class (for multi-hot labels, images that have the class)."""
    if labels.ndim == 2:
        totals = labels.sum(axis=0)
    else:
        totals = np.bincount(labels, minlength=len(class_names))
    return {name: int(total) for name, total in zip(class_names, totals)}


def labelled_files(
    paths: Sequence[str],
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    source: str,
    image_size: tuple[int, int],
    batch_size: int,
    validation_split: float | None,
    test_split: float | None,
    seed: int | None,
    strict: bool,
    cache: str | None,
    deterministic: bool,
    missing: dict[str, str] | None = None,
    require_every_class: bool = True,
) -> ImageData:
    """Checks the files, splits them per class and builds the pipelines."""
    usable, skipped = check_files(list(paths), strict=strict, source=source, missing=missing)
    paths = [p for p, ok in zip(paths, usable) if ok]
    labels = labels[usable]
    counts = counts_by_class(labels, class_names)
    empty = [name for name, count in counts.items() if count == 0]
    if empty and require_every_class:
        raise ValueError(
            f"Classes with no usable images in {source}: {empty}. Add images or remove the classes."
        )
    splits = split_indices(
        labels, validation_split=validation_split, test_split=test_split, seed=seed
    )

    def pipeline(indices, shuffle):
        return file_pipeline(
            [paths[i] for i in indices],
            labels[indices],
            image_size=image_size,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            cache=cache if shuffle else None,
            deterministic=deterministic,
        )

    return assemble(
        pipeline,
        splits,
        class_names=class_names,
        class_counts=counts,
        skipped=skipped,
        multi_label=labels.ndim == 2,
    )


MAX_LISTED_PROBLEMS = 20


class AnnotationError(ValueError):
    """Raised in strict mode when annotations or their images are unusable."""


def report_problems(
    problems: list[tuple[str, str]], *, strict: bool, source: str, total: str
) -> list[tuple[str, str]]:
    """Raises `AnnotationError` listing `problems` in strict mode; otherwise
    warns once and returns them as the `skipped` list."""
    if problems and strict:
        listing = "\n".join(
            f"  {where}: {reason}" for where, reason in problems[:MAX_LISTED_PROBLEMS]
        )
        more = len(problems) - MAX_LISTED_PROBLEMS
        listing += f"\n  ... and {more} more" if more > 0 else ""
        raise AnnotationError(
            f"{len(problems)} unusable annotations or images in {source}:\n{listing}\n"
            "Fix them, or pass strict=False to skip them (they are listed in .skipped)."
        )
    if problems:
        warnings.warn(
            f"Skipped {len(problems)} unusable annotations or images of {total} in {source} "
            f"(first: {problems[0][0]}: {problems[0][1]}); see the .skipped list.",
            stacklevel=3,
        )
    return list(problems)


def split_images(
    count: int, *, validation_split: float | None, test_split: float | None, seed: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random (train, validation, test) image indices, the same for the same seed."""
    for name, value in (("validation_split", validation_split), ("test_split", test_split)):
        if value is not None and not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be in (0, 1); got {value}.")
    order = np.random.default_rng(0 if seed is None else seed).permutation(count)
    n_validation = int(round(count * (validation_split or 0.0)))
    n_test = int(round(count * (test_split or 0.0)))
    if (
        (validation_split and n_validation == 0)
        or (test_split and n_test == 0)
        or n_validation + n_test >= count
    ):
        raise ValueError(
            f"{count} usable images are too few to split with validation_split="
            f"{validation_split}, test_split={test_split}."
        )
    validation = order[:n_validation]
    test = order[n_validation : n_validation + n_test]
    train = order[n_validation + n_test :]
    return tuple(np.sort(part) for part in (train, validation, test))


def generate_splits(make: Callable[[str, int], Any], **counts: int) -> dict[str, Any]:
    """{split: make(split, count)} for each split (train, validation, test) whose count is
    positive (synthetic data sets draw each split from its own seed).

    Example:

    >>> generate_splits(lambda split, n: n, train=8, validation=0, test=4)
    {'train': 8, 'test': 4}
    """
    return {split: make(split, count) for split, count in counts.items() if count}
