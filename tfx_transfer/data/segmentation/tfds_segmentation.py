"""`tfds_segmentation`: a segmentation data set from the TFDS catalogue
(e.g. "oxford_iiit_pet", whose `segmentation_mask` holds 1 pet, 2 background, 3 border)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tensorflow_datasets
from tqdm.auto import tqdm

from tfx_transfer.core.conventions import IGNORE_INDEX
from tfx_transfer.data.common import report_problems
from tfx_transfer.data.images import as_size
from tfx_transfer.data.segmentation.masks import (
    SegmentationData,
    batch_pairs,
    check_ignore_index,
    describe_values,
    resize_mask,
)
from tfx_transfer.data.tfds_prepare import prepare

SPLIT_NAMES = ("train", "validation", "test")
# Names of the raw mask values of catalogued data sets whose masks have no class names.
KNOWN_MASK_VALUES = {
    "oxford_iiit_pet": {1: "pet", 2: "background", 3: "border"},
}


def tfds_segmentation(
    name: str,
    *,
    image_key: str = "image",
    mask_key: str = "segmentation_mask",
    class_names: Sequence[str] | None = None,
    image_size: int | tuple[int, int],
    batch_size: int = 8,
    splits: Sequence[str | None] | Mapping[str, str] | str = ("train", "test"),
    mask_offset: int = 0,
    ignore_index: int = IGNORE_INDEX,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    seed: int | None = None,
) -> SegmentationData:
    """Loads a TFDS data set with an image and a per-pixel class mask feature.

    Each mask value v becomes class id `v - mask_offset`; a value equal to
    `ignore_index` stays `ignore_index`, and so do values that would become
    negative (e.g. an "unlabelled" 0 with mask_offset=1). Images are resized
    bilinearly to `image_size`, masks with nearest neighbours. Every mask is
    read once (for `pixel_counts` and checks): an example with a value that is
    not a class id is left out and listed in `.skipped` with its values.
    Offline, a data set that is not prepared fails fast with
    `tt.data.DatasetUnavailableError` (as in `tt.data.tfds`).

    Args:
        name: str. A TFDS catalogue name, e.g. "oxford_iiit_pet".
        image_key, mask_key: str. The image and mask features.
        class_names: sequence of str; class id k is class_names[k]. Default:
            the known names of the data set's mask values ("oxford_iiit_pet":
            pet, background, border), else "class_<k>" up to the largest id found.
        image_size: int or (height, width).
        batch_size: int.
        splits: TFDS split names for (train, test) with two entries, (train,
            validation, test) with three, a single training split, or a dict
            {"train": ..., "validation": ..., "test": ...}; None leaves a split
            out. Slices like "train[:90%]" work.
        mask_offset: int. Subtracted from every mask value (1 maps
            oxford_iiit_pet's 1..3 to 0..2).
        ignore_index: int. Mask value of pixels not trained on nor scored.
        data_dir: path. Where TFDS keeps data sets (default: TFDS' own).
        download: bool. Download and prepare the data set when it is missing;
            False fails at once.
        seed: int. Seeds the training shuffle.

    Example:

    >>> data = tt.data.tfds_segmentation(
    ...     "oxford_iiit_pet", image_size=128, mask_offset=1, download=True)
    >>> data.class_names, data.image_counts
    (['pet', 'background', 'border'], {'train': 3680, 'validation': 0, 'test': 3669})
    """
    chosen = _resolve_splits(splits)
    builder = tensorflow_datasets.builder(name, data_dir=data_dir)
    features = builder.info.features
    for role, key in (("image_key", image_key), ("mask_key", mask_key)):
        if key not in features:
            raise ValueError(
                f"TFDS data set {name!r} has no {key!r} feature ({role}); its features are "
                f"{sorted(features.keys())}."
            )
    if not builder.is_prepared():
        prepare(builder, name, download)
    size = as_size(image_size)

    def remap(raw):
        raw = tf.cast(raw, tf.int32)
        raw = raw[..., 0] if raw.shape.rank == 3 else raw
        shifted = raw - mask_offset
        return tf.where((raw == ignore_index) | (shifted < 0), ignore_index, shifted)

    scans = {
        role: _scan(builder, split, image_key, mask_key, remap, size)
        for role, split in chosen.items()
    }
    found = set().union(*(values for scan in scans.values() for values, _ in scan))
    found.discard(ignore_index)
    if class_names is None:
        class_names = _default_names(name, found, mask_offset, ignore_index)
    class_names = list(class_names)
    num_classes = len(class_names)
    check_ignore_index(ignore_index, num_classes)

    problems, keep, counts = [], {}, np.zeros(num_classes, np.int64)
    for role, scan in scans.items():
        keep[role] = np.ones(len(scan), bool)
        for index, (values, pixels) in enumerate(scan):
            bad = [v for v in values if not 0 <= v < num_classes and v != ignore_index]
            if bad:
                keep[role][index] = False
                problems.append(
                    (
                        f"{name} {chosen[role]} example {index}",
                        describe_values(bad, num_classes, ignore_index)
                        + f" (after mask_offset={mask_offset})",
                    )
                )
                continue
            for value, count in pixels.items():
                if 0 <= value < num_classes:
                    counts[value] += count
    examples = sum(len(scan) for scan in scans.values())
    skipped = report_problems(
        problems, strict=False, source=f"TFDS {name!r}", total=f"{examples} images"
    )
    if not keep["train"].any():
        raise ValueError(
            f"No usable training examples in TFDS {name!r} split {chosen['train']!r}; check "
            f"class_names and mask_offset. First problems: {skipped[:3]}."
        )

    def element(example):
        image = tf.image.resize(example[image_key], size)
        return image, resize_mask(remap(example[mask_key]), size)

    def pipeline(role):
        if role not in chosen or not keep[role].any():
            return None
        usable = keep[role]
        data = (
            builder.as_dataset(split=chosen[role], shuffle_files=False)
            .enumerate()
            .filter(lambda index, _: tf.gather(usable, index))
            .map(lambda _, example: element(example), num_parallel_calls=tf.data.AUTOTUNE)
        )
        return batch_pairs(
            data, count=int(usable.sum()), batch_size=batch_size, shuffle=role == "train", seed=seed
        )

    return SegmentationData(
        train=pipeline("train"),
        validation=pipeline("validation"),
        test=pipeline("test"),
        class_names=class_names,
        ignore_index=ignore_index,
        image_size=size,
        image_counts={role: int(keep[role].sum()) if role in keep else 0 for role in SPLIT_NAMES},
        pixel_counts=dict(zip(class_names, counts.tolist())),
        skipped=skipped,
    )


def _resolve_splits(splits) -> dict[str, str]:
    """{"train": ..., "validation": ..., "test": ...} (missing roles left out)."""
    if isinstance(splits, str):
        chosen = {"train": splits}
    elif isinstance(splits, Mapping):
        unknown = sorted(set(splits) - set(SPLIT_NAMES))
        if unknown:
            raise ValueError(
                f"Unknown split roles {unknown}; expected some of {list(SPLIT_NAMES)}."
            )
        chosen = dict(splits)
    else:
        splits = list(splits)
        roles = {1: ("train",), 2: ("train", "test"), 3: SPLIT_NAMES}.get(len(splits))
        if roles is None:
            raise ValueError(
                f"splits must name 1 to 3 TFDS splits (train[, validation], test); got {splits}."
            )
        chosen = dict(zip(roles, splits))
    chosen = {role: split for role, split in chosen.items() if split is not None}
    if "train" not in chosen:
        raise ValueError(f"splits must include a training split; got {splits!r}.")
    return chosen


def _scan(builder, split, image_key, mask_key, remap, size) -> list[tuple[set, dict]]:
    """Per example: (class ids in the full-size mask, {class id: pixels at `size`})."""

    def fields(example):
        mask = remap(example[mask_key])
        values = tf.unique(tf.reshape(mask, [-1]))[0]
        resized, _, counts = tf.unique_with_counts(tf.reshape(resize_mask(mask, size), [-1]))
        return values, resized, counts

    data = builder.as_dataset(
        split=split,
        shuffle_files=False,
        decoders={image_key: tensorflow_datasets.decode.SkipDecoding()},
    )
    rows = []
    reading = data.map(fields, num_parallel_calls=tf.data.AUTOTUNE).as_numpy_iterator()
    for values, resized, counts in tqdm(reading, desc=f"Reading {split} masks", leave=False):
        rows.append((set(values.tolist()), dict(zip(resized.tolist(), counts.tolist()))))
    return rows


def _default_names(name: str, found: set[int], mask_offset: int, ignore_index: int) -> list[str]:
    """Class names for ids 0..max(found): the data set's known names, else "class_<k>"."""
    known = KNOWN_MASK_VALUES.get(name.split(":")[0].split("/")[0], {})
    known = {value: label for value, label in known.items() if value != ignore_index}
    ids = [v for v in found if v >= 0] + [value - mask_offset for value in known]
    top = max([v for v in ids if v >= 0], default=-1)
    if top < 0:
        raise ValueError(f"The masks of TFDS {name!r} hold no class ids; pass class_names.")
    return [known.get(k + mask_offset, f"class_{k}") for k in range(top + 1)]
