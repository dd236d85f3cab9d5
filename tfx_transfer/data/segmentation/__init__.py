"""Semantic segmentation data: image folders with PNG class-id masks, TFDS and
the embedded synthetic shapes, as `tf.data` batches of (images, masks), with
joint image-and-mask augmentation.

Batches fit KerasCV's DeepLabV3+ (or any per-pixel classifier) directly with
`SparseCategoricalCrossentropy(ignore_class=data.ignore_index)`.

Example:

>>> data = tt.data.synthetic_segmentation(32, image_size=64, test_images=8)
>>> images, masks = next(iter(data.train))
>>> images.shape, masks.shape, masks.dtype
(TensorShape([8, 64, 64, 3]), TensorShape([8, 64, 64]), tf.int32)
"""

from tfx_transfer.data.segmentation.augment import augment_segmentation
from tfx_transfer.data.segmentation.masks import SegmentationData, mask_folder
from tfx_transfer.data.segmentation.synthetic import (
    synthetic_segmentation,
    synthetic_segmentation_arrays,
)
from tfx_transfer.data.segmentation.tfds_segmentation import tfds_segmentation

__all__ = [
    "SegmentationData",
    "augment_segmentation",
    "mask_folder",
    "synthetic_segmentation",
    "synthetic_segmentation_arrays",
    "tfds_segmentation",
]
