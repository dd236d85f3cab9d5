"""Training targets of a two-stage detector: box deltas, anchor labels, sampled ROIs.

All boxes are (y1, x1, y2, x2) in pixels; ground truth comes padded, rows of
class -1 being padding. Sampling draws random keys from a Keras
`SeedGenerator`, so it is reproducible under `keras.utils.set_random_seed`.
The rules are those of Faster R-CNN (Ren et al., 2015) and the TF Object
Detection API: anchors are positive at IoU >= 0.7 with a box (and each box's
best anchor), negative below 0.3, 256 sampled per image, at most half
positive; ROIs are foreground at IoU >= 0.5, background below, at most a
quarter foreground.
"""

from __future__ import annotations

import keras
import keras_cv
import tensorflow as tf

BOX_SCALES = (10.0, 10.0, 5.0, 5.0)  # the TF Object Detection API's box coder scale factors
MAX_LOG_SCALE = 4.135  # log(1000 / 16): no box grows more than that from its anchor


def encode_boxes(boxes: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """Deltas (ty, tx, th, tw) that move `anchors` onto `boxes` (same shapes, [..., 4]).

    Example:

    >>> encode_boxes(tf.constant([[0., 0., 10., 10.]]), tf.constant([[0., 0., 10., 10.]]))
    <tf.Tensor: shape=(1, 4), dtype=float32, numpy=array([[0., 0., 0., 0.]], dtype=float32)>
    """
    anchor_center, anchor_size = _center_size(anchors)
    center, size = _center_size(boxes)
    offsets = (center - anchor_center) / anchor_size
    scales = tf.math.log(size / anchor_size)
    return tf.concat([offsets, scales], axis=-1) * tf.constant(BOX_SCALES)


def decode_boxes(deltas: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """The boxes that `deltas` (from `encode_boxes`) make of `anchors`.

    Example:

    >>> decode_boxes(encode_boxes(boxes, anchors), anchors)    # boxes again
    """
    deltas = tf.cast(deltas, tf.float32) / tf.constant(BOX_SCALES)
    anchor_center, anchor_size = _center_size(anchors)
    center = anchor_center + deltas[..., :2] * anchor_size
    size = anchor_size * tf.exp(tf.minimum(deltas[..., 2:], MAX_LOG_SCALE))
    return tf.concat([center - size / 2, center + size / 2], axis=-1)


def _center_size(boxes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    boxes = tf.cast(boxes, tf.float32)
    size = tf.maximum(boxes[..., 2:] - boxes[..., :2], 1e-3)
    return boxes[..., :2] + size / 2, size


def matched_boxes(candidates: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor):
    """Each candidate's best ground-truth box: (IoU [B, N], box [B, N, 4], class [B, N], and
    the IoU matrix [B, N, G + 1] with -1 for padding). `candidates` is [B, N, 4] or [N, 4].

    Example:

    >>> iou, box, label, _ = matched_boxes(anchors, boxes, classes)   # iou -1: no box at all
    """
    # One padding row, so that images (and batches) without boxes need no special case.
    boxes = tf.pad(tf.cast(boxes, tf.float32), [[0, 0], [0, 1], [0, 0]])
    classes = tf.pad(tf.cast(classes, tf.int32), [[0, 0], [0, 1]], constant_values=-1)
    if candidates.shape.rank == 2:
        candidates = tf.tile(candidates[None], [tf.shape(boxes)[0], 1, 1])
    iou = keras_cv.bounding_box.compute_iou(candidates, boxes, "yxyx")
    iou = tf.where((classes >= 0)[:, None, :], iou, -1.0)
    best = tf.argmax(iou, axis=-1, output_type=tf.int32)
    box = tf.gather(boxes, best, batch_dims=1)
    label = tf.gather(classes, best, batch_dims=1)
    return tf.reduce_max(iou, axis=-1), box, label, iou


def anchor_labels(anchors: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor):
    """Region proposal targets: positive and negative anchors [B, N] (bool) and deltas [B, N, 4].

    Example:

    >>> positive, negative, deltas = anchor_labels(anchors, boxes, classes)
    """
    best_iou, box, _, iou = matched_boxes(anchors, boxes, classes)
    # Each box's best anchor is positive too, however low its IoU.
    best_per_box = tf.reduce_max(iou, axis=1, keepdims=True)
    is_best = tf.reduce_any((iou >= best_per_box) & (best_per_box > 0.0), axis=-1)
    positive = (best_iou >= 0.7) | is_best
    negative = (best_iou < 0.3) & ~positive
    return positive, negative, encode_boxes(box, anchors)


def sample(
    positive: tf.Tensor,
    negative: tf.Tensor,
    count: int,
    positive_fraction: float,
    seed: keras.random.SeedGenerator,
) -> tf.Tensor:
    """A random choice of at most `count` candidates per row, at most
    `positive_fraction` of them positive: a bool mask [B, N].

    Example:

    >>> chosen = sample(positive, negative, 256, 0.5, seed_generator)
    """
    keys = keras.random.uniform(tf.shape(positive), seed=seed)
    positives = _first(positive, keys, int(count * positive_fraction))
    taken = tf.reduce_sum(tf.cast(positives, tf.int32), axis=1, keepdims=True)
    negatives = _first(negative, keys, count - taken)
    return positives | negatives


def _first(mask: tf.Tensor, keys: tf.Tensor, limit) -> tf.Tensor:
    """The `limit` members of `mask` with the smallest keys, per row."""
    ranked = tf.where(mask, keys, 2.0)
    order = tf.argsort(ranked, axis=1)
    rank = tf.argsort(order, axis=1)
    return mask & (rank < limit)


def sample_rois(
    proposals: tf.Tensor,
    valid: tf.Tensor,
    boxes: tf.Tensor,
    classes: tf.Tensor,
    count: int,
    seed: keras.random.SeedGenerator,
):
    """`count` ROIs per image from the proposals and the ground-truth boxes, with targets.

    Returns (rois [B, S, 4], labels [B, S] (0 background, class k as k + 1),
    deltas [B, S, 4] towards the matched box, weights [B, S] (1 for a sampled
    ROI, 0 for padding when there are fewer candidates than `count`)).

    Example:

    >>> rois, labels, deltas, weights = sample_rois(proposals, valid, boxes, classes, 128, seed)
    """
    candidates = tf.concat([proposals, tf.cast(boxes, tf.float32)], axis=1)
    usable = tf.concat([valid, classes >= 0], axis=1)
    best_iou, box, label, _ = matched_boxes(candidates, boxes, classes)
    foreground = usable & (best_iou >= 0.5)
    background = usable & ~foreground  # also every proposal of an image without boxes
    chosen = sample(foreground, background, count, 0.25, seed)
    priority = tf.cast(chosen, tf.float32) * 2.0 + tf.cast(foreground, tf.float32)
    total = tf.shape(candidates)[1]
    padding = tf.maximum(count - total, 0)  # fewer candidates than ROIs: pad, weight 0
    priority = tf.pad(priority, [[0, 0], [0, padding]], constant_values=-1.0)
    _, index = tf.math.top_k(priority, k=count)
    picked = tf.gather(priority, index, batch_dims=1)
    index = tf.minimum(index, total - 1)
    rois = tf.gather(candidates, index, batch_dims=1)
    is_foreground = tf.gather(foreground, index, batch_dims=1)
    labels = tf.where(is_foreground, tf.gather(label, index, batch_dims=1) + 1, 0)
    deltas = encode_boxes(tf.gather(box, index, batch_dims=1), rois)
    return rois, labels, deltas, tf.cast(picked >= 2.0, tf.float32)
