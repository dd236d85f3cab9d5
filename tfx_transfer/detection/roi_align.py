"""`ROIAlign`: fixed-size features of boxes, by bilinear sampling (`tf.image.crop_and_resize`).

KerasCV's `ROIPooler` loops over boxes in Python and max-pools integer
cells; ROIAlign (He et al., 2017) samples each output cell at 2 x 2 points
bilinearly and averages them, so features follow a box to a fraction of a
pixel. `tf.image.crop_and_resize` does the bilinear sampling for every box
of the batch in one op (on CPU and GPU alike), as in the TF Object Detection
API's Faster R-CNN.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfx_transfer")
class ROIAlign(keras.layers.Layer):
    """Features of boxes: [B, H, W, C] features and [B, R, 4] boxes -> [B, R, S, S, C].

    Boxes are (y1, x1, y2, x2) in input-image pixels; the features are the
    image's at `stride` pixels per cell. Each of the S x S output bins is
    the average of 2 x 2 bilinear samples at the centres of its quarters
    (half-pixel aligned, "aligned=True" in Detectron2's terms). Samples within
    half a cell of the map's border read the border cell; farther out, zeros.

    Args:
        output_size: int. S, the output side (7 in Faster R-CNN).
        stride: int. Input pixels per feature cell (16 for P4).

    Example:

    >>> align = ROIAlign(output_size=7, stride=16)
    >>> align(features, boxes).shape        # features (2, 32, 32, 256), boxes (2, 100, 4)
    TensorShape([2, 100, 7, 7, 256])
    """

    def __init__(self, output_size: int = 7, stride: int = 16, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(output_size) < 1 or int(stride) < 1:
            raise ValueError(
                f"ROIAlign needs a positive output_size and stride; got {output_size}, {stride}."
            )
        self.output_size = int(output_size)
        self.stride = int(stride)

    def call(self, features, boxes):
        features = tf.cast(features, tf.float32)
        boxes = tf.cast(boxes, tf.float32)
        batch, rois = tf.shape(boxes)[0], tf.shape(boxes)[1]
        samples = 2 * self.output_size
        # Sample points at the centres of a 2S x 2S grid over the box (crop_and_resize puts
        # its first and last samples on the box edges: shrink the box by half a step).
        corners = tf.reshape(boxes, [batch, rois, 2, 2])
        half_step = (corners[:, :, 1:] - corners[:, :, :1]) / (2.0 * samples)
        corners = tf.concat([corners[:, :, :1] + half_step, corners[:, :, 1:] - half_step], 2)
        # Feature cell c covers pixels [c, c + 1) x stride; crop_and_resize indexes cell centres.
        # One replicated cell around the map clamps samples in the outer half cells to the
        # border, as ROIAlign does (without it they would read zeros).
        padded = tf.pad(features, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
        cells = tf.reshape(corners, [batch, rois, 4]) / float(self.stride) + 0.5
        height = tf.cast(tf.shape(padded)[1] - 1, tf.float32)
        width = tf.cast(tf.shape(padded)[2] - 1, tf.float32)
        normalized = cells / tf.stack([height, width, height, width])
        pooled = tf.image.crop_and_resize(
            padded,
            tf.reshape(normalized, [-1, 4]),
            tf.repeat(tf.range(batch), rois),
            [samples, samples],
            method="bilinear",
        )
        pooled = tf.nn.avg_pool2d(pooled, ksize=2, strides=2, padding="VALID")
        return tf.reshape(
            pooled,
            [batch, rois, self.output_size, self.output_size, features.shape[-1]],
        )

    def compute_output_shape(self, features_shape, boxes_shape):
        return (*boxes_shape[:2], self.output_size, self.output_size, features_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "output_size": self.output_size, "stride": self.stride}
