"""`SegmentationData`, what every segmentation source shares, and `mask_folder`:
images with PNG class-id masks paired by file name.

A batch is `(images, masks)`: float32 `(B, H, W, 3)` pixels in 0..255 and int32
`(B, H, W)` class ids, where `ignore_index` (default 255) marks pixels that are
neither trained on nor scored. Images are resized bilinearly, masks with
nearest neighbours, so a mask only ever holds class ids and `ignore_index`.

Masks are PNG files of class ids: 8- or 16-bit grayscale, palette PNGs (the
Pascal VOC style: the palette index is the class id, whatever its colour),
1/2/4-bit grayscale (values as written, not stretched to 0..255), or RGB with
equal channels. Colour-coded RGB masks are reported as unusable.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from tfx_transfer.core.conventions import IGNORE_INDEX
from tfx_transfer.data.common import report_problems, split_images
from tfx_transfer.data.images import _clean, as_size, decode_resize, unusable_reason

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# How `decode_mask` reads a PNG: 8-bit-per-sample grey (or equal RGB), 16-bit, palette.
_GREY8, _GREY16, _PALETTE = 0, 1, 2
_PALETTE_SIZE = 256
_NO_COLOUR = 1 << 25  # pads palette colour codes (r << 16 | g << 8 | b is < 2**24)
_MAX_LISTED_VALUES = 5


@dataclasses.dataclass
class SegmentationData:
    """Images with per-pixel class masks, ready for `model.fit(data.train)`.

    Attributes:
        train: tf.data.Dataset of `(images, masks)` batches: float32
            `(B, H, W, 3)` pixels 0..255 and int32 `(B, H, W)` class ids.
        validation, test: the same for the held-out splits, or None.
        class_names: list of str. Mask value k is class_names[k].
        ignore_index: int. Mask value of pixels that are not trained on nor
            scored (e.g. `SparseCategoricalCrossentropy(ignore_class=ignore_index)`).
        image_size: (height, width) of every image and mask.
        image_counts: dict. Split name -> number of images.
        pixel_counts: dict. Class name -> labelled pixels at `image_size` (all splits).
        skipped: list of (file or example, reason) for what was left out.

    Example:

    >>> data = tt.data.synthetic_segmentation(32, image_size=64, test_images=8)
    >>> data.num_classes, data.image_counts["test"]
    (91, 8)
    >>> loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=data.ignore_index)
    >>> model.fit(data.train, validation_data=data.test, epochs=1)
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    test: tf.data.Dataset | None
    class_names: list[str]
    ignore_index: int
    image_size: tuple[int, int]
    image_counts: dict[str, int]
    pixel_counts: dict[str, int]
    skipped: list[tuple[str, str]]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def mask_folder(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike,
    *,
    class_names: Sequence[str],
    image_size: int | tuple[int, int],
    batch_size: int = 8,
    validation_split: float | None = None,
    test_split: float | None = None,
    seed: int | None = None,
    ignore_index: int = IGNORE_INDEX,
    strict: bool = False,
) -> SegmentationData:
    """Loads images and their PNG class-id masks, paired by file name.

    The mask of `images_dir/<stem>.<ext>` (any image format) is
    `masks_dir/<stem>.png`; sub-folders pair the same way (`a/b.jpg` with
    `a/b.png`), hidden files (".name") are ignored. Each image is resized
    bilinearly to `image_size` and its mask with nearest neighbours (aspect
    ratio not kept); a mask whose size differs from its image's is resized the
    same way, so the two cover the same scene. Every pair is checked once:
    an image without a mask, a mask without an image, unreadable or corrupt
    images and masks, colour-coded masks and masks holding a value that is
    neither a class id (0..len(class_names) - 1) nor `ignore_index` are left
    out and listed in `.skipped` (one warning says how many), or, with
    `strict=True`, raise `tt.data.AnnotationError` (a `ValueError`) naming
    every file and value. Splits are random and the same for the same `seed`.

    Args:
        images_dir: path. The images (JPEG, PNG, BMP, GIF).
        masks_dir: path. One PNG mask per image (see the module docstring for
            the PNG kinds read; palette PNGs give their palette indices).
        class_names: sequence of str. Mask value k means class_names[k].
        image_size: int or (height, width).
        batch_size: int.
        validation_split, test_split: float in (0, 1), or None.
        seed: int. Fixes the splits and the training shuffle (default 0).
        ignore_index: int. Mask value of unlabelled pixels (kept in the
            batches; pass it to the loss as `ignore_class`).
        strict: bool. Raise on any unusable file instead of skipping it.

    Example:

    >>> data = tt.data.mask_folder("pets/images", "pets/masks", image_size=128,
    ...                            class_names=["background", "cat", "dog"], test_split=0.2)
    >>> data.image_counts, data.skipped[:1]
    ({'train': 80, 'validation': 0, 'test': 20}, [('pets/images/x.jpg', 'no mask ...')])
    """
    images_root, masks_root = Path(images_dir), Path(masks_dir)
    for what, root in (("Image", images_root), ("Mask", masks_root)):
        if not root.is_dir():
            raise FileNotFoundError(
                f"{what} folder {str(root)!r} does not exist or is not a folder."
            )
    if images_root.resolve() == masks_root.resolve():
        raise ValueError("images_dir and masks_dir must be different folders.")
    class_names = list(class_names)
    check_ignore_index(ignore_index, len(class_names))
    size = as_size(image_size)
    source = f"{str(images_root)!r} and {str(masks_root)!r}"

    pairs, problems, (n_images, n_masks) = _pair_files(images_root, masks_root)
    checks = _check_pairs(pairs, size=size, num_classes=len(class_names), ignore=ignore_index)
    usable, counts = [], np.zeros(len(class_names), np.int64)
    for (image, mask), (problem, info, pair_counts) in zip(pairs, checks):
        if problem:
            problems.append(problem)
            continue
        usable.append((image, mask, info))
        counts += pair_counts
    total = f"{n_images} images and {n_masks} masks"
    skipped = report_problems(problems, strict=strict, source=source, total=total)
    if not usable:
        raise ValueError(
            f"No usable image and mask pairs in {source}; first problems: {skipped[:3]}."
        )
    splits = split_images(
        len(usable), validation_split=validation_split, test_split=test_split, seed=seed
    )
    rows, palette_codes, palette_indices = _stack_palettes([info[2] for _, _, info in usable])
    files = [(image, mask, info[0], info[1], row) for (image, mask, info), row in zip(usable, rows)]

    def pipeline(indices, shuffle):
        return _file_batches(
            [files[i] for i in indices],
            palette_codes,
            palette_indices,
            size=size,
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
        )

    return assemble(
        pipeline,
        splits,
        class_names=class_names,
        ignore_index=ignore_index,
        image_size=size,
        pixel_counts=dict(zip(class_names, counts.tolist())),
        skipped=skipped,
    )


def check_ignore_index(ignore_index: int, num_classes: int) -> None:
    """Raises when `ignore_index` is also a class id."""
    if not isinstance(ignore_index, (int, np.integer)) or 0 <= ignore_index < num_classes:
        raise ValueError(
            f"ignore_index must be an int outside the class ids 0..{num_classes - 1}; "
            f"got {ignore_index!r}."
        )


def resize_mask(mask: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """An integer `(h, w)` mask -> int32 `image_size` mask, nearest neighbours."""
    resized = tf.image.resize(tf.cast(mask, tf.int32)[..., None], image_size, method="nearest")
    return tf.ensure_shape(resized[..., 0], image_size)


def batch_pairs(
    elements: tf.data.Dataset, *, count: int, batch_size: int, shuffle: bool, seed: int | None
) -> tf.data.Dataset:
    """(image, mask) elements -> shuffled (if `shuffle`), batched, prefetched pairs."""
    if shuffle:
        elements = elements.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    return elements.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def assemble(
    pipeline: Callable[[np.ndarray, bool], tf.data.Dataset],
    splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    **fields,
) -> SegmentationData:
    """`SegmentationData` from `pipeline(indices, shuffle)` and (train,
    validation, test) indices; an empty held-out split becomes None."""
    train, validation, test = splits
    return SegmentationData(
        train=pipeline(train, True),
        validation=pipeline(validation, False) if len(validation) else None,
        test=pipeline(test, False) if len(test) else None,
        image_counts={"train": len(train), "validation": len(validation), "test": len(test)},
        **fields,
    )


def describe_values(values: Sequence[int], num_classes: int, ignore_index: int) -> str:
    """The reason a mask with out-of-range `values` is unusable."""
    values = sorted(int(v) for v in values)
    shown = ", ".join(map(str, values[:_MAX_LISTED_VALUES]))
    shown += ", ..." if len(values) > _MAX_LISTED_VALUES else ""
    noun = "value" if len(values) == 1 else "values"
    verb = "is not a class id" if len(values) == 1 else "are not class ids"
    return f"mask {noun} {shown} {verb} (0..{num_classes - 1}) nor ignore_index {ignore_index}"


# --- mask files -----------------------------------------------------------------------


def _visible_files(root: Path) -> list[Path]:
    found = []
    for current, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(current, n) for n in sorted(names) if not n.startswith(".")]
    return found


def _stem(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _pair_files(
    images_root: Path, masks_root: Path
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], tuple[int, int]]:
    """[(image path, mask path)] paired by stem, the files without a partner as
    (path, reason), and the numbers of image and mask files."""
    problems = []
    masks = {}
    mask_files, image_files = _visible_files(masks_root), _visible_files(images_root)
    for path in mask_files:
        if path.suffix.lower() != ".png":
            problems.append(
                (str(path), "not a PNG mask (masks are PNG files named <image stem>.png)")
            )
        else:
            masks[_stem(path, masks_root)] = path
    images: dict[str, list[Path]] = {}
    for path in image_files:
        images.setdefault(_stem(path, images_root), []).append(path)
    pairs = []
    for stem, paths in images.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            problems += [
                (str(p), f"several images share the stem {stem!r} ({names}); rename all but one")
                for p in paths
            ]
        elif stem not in masks:
            problems.append((str(paths[0]), f"no mask (expected {masks_root / (stem + '.png')})"))
        else:
            pairs.append((str(paths[0]), str(masks[stem])))
    problems += [
        (str(path), f"no image named {stem!r}.* in {images_root}")
        for stem, path in masks.items()
        if stem not in images
    ]
    return pairs, problems, (len(image_files), len(mask_files))


def _png_header(contents: bytes) -> tuple[int, int, int, np.ndarray | None]:
    """(kind, divisor, bit depth, palette (n, 3) or None) from a PNG's chunks.

    Raises ValueError with the reason the file is not a usable mask PNG."""
    if not contents.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG image")
    if len(contents) < 33 or contents[12:16] != b"IHDR":
        raise ValueError("corrupt mask (no PNG header)")
    bit_depth, colour_type = contents[24], contents[25]
    if bit_depth not in (1, 2, 4, 8, 16):
        raise ValueError(f"corrupt mask (PNG bit depth {bit_depth})")
    if colour_type == 3:
        palette, offset = None, 8
        while offset + 8 <= len(contents) and palette is None:
            length, chunk = struct.unpack(">I4s", contents[offset : offset + 8])
            if chunk == b"PLTE":
                body = contents[offset + 8 : offset + 8 + length]
                if not body or len(body) % 3:
                    raise ValueError("corrupt mask (invalid PLTE chunk)")
                palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
            offset += 12 + length
        if palette is None:
            raise ValueError("corrupt mask (palette PNG without a PLTE chunk)")
        return _PALETTE, 1, bit_depth, palette
    if bit_depth == 16:
        return _GREY16, 1, bit_depth, None
    # libpng stretches 1/2/4-bit grey to 0..255; dividing gives the values back
    return _GREY8, 255 // (2**bit_depth - 1), bit_depth, None


def _palette_lookup(palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted colour codes, palette index of each) padded to 256; a colour
    listed twice maps to its first index."""
    rgb = palette.astype(np.int64)
    codes = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    unique, first = np.unique(codes, return_index=True)
    padded = np.full(_PALETTE_SIZE, _NO_COLOUR, np.int64)
    indices = np.zeros(_PALETTE_SIZE, np.int32)
    padded[: len(unique)], indices[: len(unique)] = unique, first
    return padded, indices


def decode_mask(
    contents: tf.Tensor,
    kind: tf.Tensor,
    divisor: tf.Tensor,
    palette_codes: tf.Tensor,
    palette_indices: tf.Tensor,
) -> tf.Tensor:
    """PNG bytes -> int32 `(h, w)` class ids (palette PNGs give palette indices)."""

    def grey8():
        values = tf.cast(tf.io.decode_png(contents, channels=0)[..., 0], tf.int32)
        return values // tf.cast(divisor, tf.int32)

    def grey16():
        return tf.cast(tf.io.decode_png(contents, channels=0, dtype=tf.uint16)[..., 0], tf.int32)

    def palette():
        rgb = tf.cast(tf.io.decode_png(contents, channels=3), tf.int64)
        codes = rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
        position = tf.searchsorted(palette_codes, tf.reshape(codes, [-1]))
        return tf.reshape(tf.gather(palette_indices, position), tf.shape(codes))

    return tf.switch_case(tf.cast(kind, tf.int32), [grey8, grey16, palette])


def _check_pairs(
    pairs: list[tuple[str, str]], *, size: tuple[int, int], num_classes: int, ignore: int
) -> list[tuple[tuple[str, str] | None, tuple | None, np.ndarray | None]]:
    """Per pair: (problem or None, mask decoding info, labelled pixels per class at `size`)."""

    def inspect(pair):
        image, mask = pair
        reason = unusable_reason(image)
        if reason:
            return (image, reason), None, None
        try:
            info, values = _read_mask(mask)
        except ValueError as error:
            return (mask, str(error)), None, None
        present = np.unique(values.numpy())
        bad = present[((present < 0) | (present >= num_classes)) & (present != ignore)]
        if len(bad):
            return (mask, describe_values(bad, num_classes, ignore)), None, None
        resized = tf.reshape(resize_mask(values, size), [-1])
        labelled = tf.boolean_mask(resized, resized < num_classes)
        counts = tf.math.bincount(labelled, minlength=num_classes, maxlength=num_classes)
        return None, info, counts.numpy().astype(np.int64)

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        return list(
            tqdm(
                pool.map(inspect, pairs),
                total=len(pairs),
                desc="Checking images and masks",
                leave=False,
            )
        )


def _read_mask(path: str) -> tuple[tuple, tf.Tensor]:
    """((kind, divisor, palette or None), int32 class ids) of a mask file;
    ValueError says why the file is unusable."""
    try:
        contents = Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"unreadable ({error.strerror or error})") from None
    if not contents:
        raise ValueError("empty file (0 bytes)")
    kind, divisor, _, palette = _png_header(contents)
    codes, indices = _palette_lookup(palette if palette is not None else np.zeros((1, 3), np.uint8))
    try:
        if kind != _PALETTE:
            channels = tf.io.decode_png(contents, channels=0, dtype=tf.uint16)
            if channels.shape[-1] >= 3 and not _equal_channels(channels):
                raise ValueError(
                    "colour mask (RGB channels differ): masks hold class ids in one channel "
                    "(grayscale or palette PNG); convert colours to ids first"
                )
        values = decode_mask(contents, kind, divisor, codes, indices)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        raise ValueError(f"corrupt mask ({_clean(error.message or str(error))})") from None
    return (kind, divisor, palette), values


def _equal_channels(channels: tf.Tensor) -> bool:
    rgb = channels[..., :3]
    return bool(tf.reduce_all(rgb == rgb[..., :1]).numpy())


def _stack_palettes(
    palettes: list[np.ndarray | None],
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Each file's row in (P, 256) lookup tables of the distinct palettes, and the tables."""
    rows, seen, codes, indices = [], {}, [], []
    for palette in palettes:
        if palette is None:
            rows.append(0)
            continue
        key = palette.tobytes()
        if key not in seen:
            seen[key] = len(codes)
            table_codes, table_indices = _palette_lookup(palette)
            codes.append(table_codes)
            indices.append(table_indices)
        rows.append(seen[key])
    if not codes:
        codes, indices = _palette_lookup(np.zeros((1, 3), np.uint8))
        codes, indices = [codes], [indices]
    return rows, np.stack(codes), np.stack(indices)


def _file_batches(
    pairs: list[tuple[str, str, int, int, int]],
    palette_codes: np.ndarray,
    palette_indices: np.ndarray,
    *,
    size: tuple[int, int],
    batch_size: int,
    shuffle: bool,
    seed: int | None,
) -> tf.data.Dataset:
    """(image path, mask path, kind, divisor, palette row) -> batches of (images, masks)."""
    codes, indices = tf.constant(palette_codes), tf.constant(palette_indices)
    columns = tuple(list(column) for column in zip(*pairs))

    def load(image_path, mask_path, kind, divisor, row):
        image = decode_resize(tf.io.read_file(image_path), size)
        mask = decode_mask(tf.io.read_file(mask_path), kind, divisor, codes[row], indices[row])
        return image, resize_mask(mask, size)

    elements = tf.data.Dataset.from_tensor_slices(columns).map(
        load, num_parallel_calls=tf.data.AUTOTUNE
    )
    return batch_pairs(
        elements, count=len(pairs), batch_size=batch_size, shuffle=shuffle, seed=seed
    )
