"""`image_folder`: a labelled data set from one sub-folder of images per class."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfx_transfer.data.common import ImageData, labelled_files
from tfx_transfer.data.images import as_size


def image_folder(
    directory: str | os.PathLike,
    *,
    image_size: int | tuple[int, int],
    batch_size: int = 32,
    validation_split: float | None = None,
    test_split: float | None = None,
    seed: int | None = None,
    strict: bool = False,
    cache: str | None = None,
    deterministic: bool = True,
) -> ImageData:
    """Loads `directory/<class name>/<images>` as training (and validation/test) data.

    Every file is checked once: corrupt, empty, truncated and non-image files are
    skipped and listed in `.skipped` with the reason (one warning says how many),
    or, with `strict=True`, raise `UnusableImagesError` naming them all.
    Grayscale, RGBA, palette and 16-bit images become 8-bit RGB. Hidden files
    and folders (".name") are ignored. Validation and test splits are taken per
    class (stratified) and are the same for the same `seed` (default 0).

    Args:
        directory: path. One sub-folder per class (sub-folders may nest).
        image_size: int or (height, width). Images are resized to it.
        batch_size: int. Batch size of every split.
        validation_split: float in (0, 1), or None for no validation set.
        test_split: float in (0, 1), or None for no test set.
        seed: int. Seeds the splits and the shuffling of the training set.
        strict: bool. Raise instead of skipping unusable files.
        cache: None, "memory", or a file path: cache decoded images.
        deterministic: bool. Keep the element order when decoding in parallel.

    Example:

    >>> data = tt.data.image_folder("flowers/", image_size=64, validation_split=0.2, seed=1)
    >>> data.class_names, data.class_counts["rose"], len(data.skipped)
    (['daisy', 'rose'], 120, 0)
    >>> model.fit(data.train, validation_data=data.validation)
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {str(root)!r} does not exist or is not a folder.")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ValueError(
            f"No class folders in {str(root)!r}: expected one sub-folder of images per class."
        )
    paths, labels = [], []
    for label, folder in enumerate(class_dirs):
        files = _visible_files(folder)
        paths += files
        labels += [label] * len(files)
    return labelled_files(
        paths,
        np.array(labels, dtype=np.int32),
        [d.name for d in class_dirs],
        source=repr(str(root)),
        image_size=as_size(image_size),
        batch_size=batch_size,
        validation_split=validation_split,
        test_split=test_split,
        seed=seed,
        strict=strict,
        cache=cache,
        deterministic=deterministic,
    )


def _visible_files(folder: Path) -> list[str]:
    found = []
    for current, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(current, n) for n in sorted(names) if not n.startswith(".")]
    return found
