"""Box checks shared by the detection loaders, and the KerasCV box utilities.

Loaders keep boxes as `xyxy` pixels of the original image until the pipeline
scales them to `image_size` and converts them to the requested
`bounding_box_format` with `keras_cv.bounding_box.convert_format`. KerasCV is
imported lazily (`keras_cv()`), so `import tfx_transfer` stays fast and the
KerasCV dependency stays inside the detection modules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfx_transfer.core.conventions import BOX_PADDING

PADDING = float(BOX_PADDING)  # as boxes and classes are float32
# A box narrower or lower than this (pixels) after clipping is degenerate.
MIN_SIZE = 1.0


def keras_cv():
    """The `keras_cv` module, imported on first use."""
    import keras_cv as module

    return module


def check_box(
    xyxy: np.ndarray | list[float], width: int, height: int, *, shown: str | None = None
) -> tuple[np.ndarray | None, str | None, bool]:
    """One box in `xyxy` pixels against a `width` x `height` image.

    Returns (box clipped to the image or None, reason it was dropped or None,
    whether it was clipped). `shown` is how messages quote the box (e.g. in
    the annotation file's own format).

    Example:

    >>> check_box([-5, 2, 10, 8], width=16, height=16)
    (array([ 0.,  2., 10.,  8.], dtype=float32), None, True)
    """
    box = np.asarray(xyxy, np.float64)
    shown = shown or "box [" + ", ".join(f"{v:g}" for v in box) + "] (xyxy)"
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        return None, f"{shown} is not 4 finite numbers", False
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return None, f"{shown} has non-positive width or height", False
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        return None, f"{shown} is wholly outside the {width}x{height} image", False
    clipped = np.array([max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)])
    was_clipped = bool(np.any(clipped != box))
    if clipped[2] - clipped[0] < MIN_SIZE or clipped[3] - clipped[1] < MIN_SIZE:
        return None, f"{shown} is under {MIN_SIZE:g} px inside the image", was_clipped
    return clipped.astype(np.float32), None, was_clipped


def from_xyxy(boxes: tf.Tensor, bounding_box_format: str, image_shape) -> tf.Tensor:
    """`xyxy` pixel boxes (N, 4) -> `bounding_box_format` (KerasCV's converter)."""
    if bounding_box_format.lower() == "xyxy":
        return boxes
    return keras_cv().bounding_box.convert_format(
        boxes, source="xyxy", target=bounding_box_format, image_shape=image_shape
    )


def to_xyxy(boxes: tf.Tensor, bounding_box_format: str, image_shape) -> tf.Tensor:
    """`bounding_box_format` boxes -> `xyxy` pixels (KerasCV's converter)."""
    if bounding_box_format.lower() == "xyxy":
        return tf.convert_to_tensor(boxes, tf.float32)
    return keras_cv().bounding_box.convert_format(
        boxes, source=bounding_box_format, target="xyxy", image_shape=image_shape
    )


def validate_format(bounding_box_format: str) -> str:
    """The format, checked against KerasCV's list (case-insensitive)."""
    formats = ("xyxy", "yxyx", "xywh", "center_xywh", "center_yxhw")
    formats += tuple(f"rel_{name}" for name in ("xyxy", "yxyx", "xywh"))
    if bounding_box_format.lower() not in formats:
        raise ValueError(
            f"Unknown bounding_box_format {bounding_box_format!r}; expected one of {list(formats)}."
        )
    return bounding_box_format


def count_degenerate(
    bounding_boxes: dict[str, Any],
    *,
    bounding_box_format: str = "xywh",
    image_shape: tuple[int, int] | None = None,
) -> int:
    """How many real boxes (class != -1) in a batch are under 1 px wide or high.

    Boxes are measured after clipping to the image when `image_shape`
    (height, width) is given. `tt.data.augment_detection` drops such boxes;
    use this to check any batch of KerasCV boxes.

    Example:

    >>> batch = next(iter(data.train))
    >>> tt.data.count_degenerate(batch["bounding_boxes"], image_shape=(128, 128))
    0
    """
    boxes = np.asarray(bounding_boxes["boxes"], np.float32).reshape(-1, 4)
    classes = np.asarray(bounding_boxes["classes"]).reshape(-1)
    real = classes != PADDING
    if not real.any():
        return 0
    shape = None if image_shape is None else (*image_shape, 3)
    xyxy = np.asarray(to_xyxy(boxes[real], bounding_box_format, shape))
    if image_shape is not None:
        height, width = image_shape
        xyxy = np.clip(xyxy, 0, [width, height, width, height])
    sizes = xyxy[:, 2:] - xyxy[:, :2]
    return int(np.sum(np.any(sizes < MIN_SIZE, axis=1)))
