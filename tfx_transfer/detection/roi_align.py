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
    image's at `stride` pixels per cell. Each of the S x S output cells is
    the average of 2 x 2 bilinear samples (half-pixel aligned, "aligned=True"
    in Detectron2's terms). Boxes partly outside the image sample zeros there.

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
        height = tf.cast(tf.shape(features)[1], tf.float32)
        width = tf.cast(tf.shape(features)[2], tf.float32)
        # crop_and_resize's coordinate 0 is the centre of the first cell, 1 that of the last.
        cells = boxes / float(self.stride) - 0.5
        scale = tf.stack([height - 1.0, width - 1.0, height - 1.0, width - 1.0])
        normalized = cells / tf.maximum(scale, 1.0)
        box_indices = tf.repeat(tf.range(batch), rois)
        samples = tf.image.crop_and_resize(
            features,
            tf.reshape(normalized, [-1, 4]),
            box_indices,
            [2 * self.output_size, 2 * self.output_size],
            method="bilinear",
        )
        pooled = tf.nn.avg_pool2d(samples, ksize=2, strides=2, padding="VALID")
        return tf.reshape(
            pooled,
            [batch, rois, self.output_size, self.output_size, features.shape[-1]],
        )

    def compute_output_shape(self, features_shape, boxes_shape):
        return (*boxes_shape[:2], self.output_size, self.output_size, features_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "output_size": self.output_size, "stride": self.stride}
