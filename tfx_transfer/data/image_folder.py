"""`image_folder`: a labelled data set from one sub-folder of images per class."""

from __future__ import annotations

import dataclasses
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfx_transfer.data.images import as_size, load_resize, unusable_reason


class UnusableImagesError(ValueError):
    """Raised in strict mode when some files are not usable images."""


@dataclasses.dataclass
class ImageFolder:
    """What `image_folder` returns.

    Attributes:
        train: tf.data.Dataset of (float32 images 0..255, int32 labels) batches.
        validation: the same for the validation split, or None without a split.
        class_names: list of str. Sub-folder names, sorted; label k is class_names[k].
        class_counts: dict. Class name -> number of usable images (both splits).
        skipped: list of (path, reason) for files that were not usable images.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    class_names: list[str]
    class_counts: dict[str, int]
    skipped: list[tuple[str, str]]


def image_folder(
    directory: str | os.PathLike,
    *,
    image_size: int | tuple[int, int],
    batch_size: int = 32,
    validation_split: float | None = None,
    seed: int | None = None,
    strict: bool = False,
) -> ImageFolder:
    """Loads `directory/<class name>/<images>` as training (and validation) data.

    Every file is checked once: corrupt, empty, truncated and non-image files are
    skipped and listed in `.skipped` with the reason (one warning says how many),
    or, with `strict=True`, raise `UnusableImagesError` naming them all.
    Grayscale, RGBA, palette and 16-bit images become 8-bit RGB. Hidden files
    and folders (".name") are ignored. The validation split is taken per class
    (stratified) and is the same for the same `seed` (default 0).

    Args:
        directory: path. One sub-folder per class (sub-folders may nest).
        image_size: int or (height, width). Images are resized to it.
        batch_size: int. Batch size of both data sets.
        validation_split: float in (0, 1), or None for no validation set.
        seed: int. Seeds the split and the shuffling of the training set.
        strict: bool. Raise instead of skipping unusable files.

    Example:

    >>> data = tt.data.image_folder("flowers/", image_size=64, validation_split=0.2, seed=1)
    >>> data.class_names, data.class_counts["rose"], len(data.skipped)
    (['daisy', 'rose'], 120, 0)
    >>> model.fit(data.train, validation_data=data.validation)
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {str(root)!r} does not exist or is not a folder.")
    size = as_size(image_size)
    if validation_split is not None and not 0.0 < validation_split < 1.0:
        raise ValueError(f"validation_split must be in (0, 1); got {validation_split}.")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ValueError(
            f"No class folders in {str(root)!r}: expected one sub-folder of images per class."
        )
    files = {d.name: _visible_files(d) for d in class_dirs}
    reasons = _check_all([f for class_files in files.values() for f in class_files])
    skipped = [(f, reasons[f]) for class_files in files.values() for f in class_files if reasons[f]]
    if skipped and strict:
        listing = "\n".join(f"  {path}: {reason}" for path, reason in skipped)
        raise UnusableImagesError(f"{len(skipped)} unusable files in {str(root)!r}:\n{listing}")
    usable = {
        name: [f for f in class_files if not reasons[f]] for name, class_files in files.items()
    }
    empty = [name for name, class_files in usable.items() if not class_files]
    if empty:
        raise ValueError(
            f"Class folders with no usable images in {str(root)!r}: {empty}. Add images or "
            "remove the folders."
        )
    if skipped:
        total = sum(len(class_files) for class_files in files.values())
        warnings.warn(
            f"Skipped {len(skipped)} of {total} files in {str(root)!r} that are not usable "
            f"images (first: {skipped[0][0]}: {skipped[0][1]}); see the .skipped list.",
            stacklevel=2,
        )
    class_names = [d.name for d in class_dirs]
    train_files, validation_files = _split(usable, class_names, validation_split, seed)
    return ImageFolder(
        train=_pipeline(train_files, size, batch_size, shuffle_seed=seed, shuffle=True),
        validation=(
            _pipeline(validation_files, size, batch_size, shuffle_seed=None, shuffle=False)
            if validation_split
            else None
        ),
        class_names=class_names,
        class_counts={name: len(usable[name]) for name in class_names},
        skipped=skipped,
    )


def _visible_files(folder: Path) -> list[str]:
    found = []
    for current, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(current, n) for n in sorted(names) if not n.startswith(".")]
    return found


def _check_all(paths: list[str]) -> dict[str, str | None]:
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        return dict(zip(paths, pool.map(unusable_reason, paths)))


def _split(usable, class_names, validation_split, seed):
    """Per-class (stratified) split into [(path, label)] lists."""
    rng = np.random.default_rng(0 if seed is None else seed)
    train, validation = [], []
    for label, name in enumerate(class_names):
        paths = list(usable[name])
        if not validation_split:
            train += [(p, label) for p in paths]
            continue
        order = rng.permutation(len(paths))
        n_validation = int(round(len(paths) * validation_split))
        if n_validation == 0 or n_validation == len(paths):
            raise ValueError(
                f"Class {name!r} has {len(paths)} usable images, too few to split with "
                f"validation_split={validation_split}."
            )
        validation += [(paths[i], label) for i in order[:n_validation]]
        train += [(paths[i], label) for i in order[n_validation:]]
    return train, validation


def _pipeline(items, size, batch_size, *, shuffle_seed, shuffle):
    paths = [p for p, _ in items]
    labels = np.array([label for _, label in items], dtype=np.int32)
    data = tf.data.Dataset.from_tensor_slices((paths, labels))
    if shuffle:
        data = data.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)
    return (
        data.map(lambda p, y: (load_resize(p, size), y), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
