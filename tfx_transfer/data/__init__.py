"""Data sources that return plain `tf.data` pipelines of (images, labels)."""

from tfx_transfer.data import shapes
from tfx_transfer.data.arrays import arrays
from tfx_transfer.data.augment import augment, augmentation_layers
from tfx_transfer.data.balance import ClassStatistics, class_statistics, class_weights, resample
from tfx_transfer.data.detection import (
    AnnotationError,
    DetectionData,
    DroppedBoxes,
    augment_detection,
    coco_detection,
    count_degenerate,
    synthetic_detection,
    synthetic_detection_arrays,
    tfds_detection,
    voc_detection,
)
from tfx_transfer.data.image_folder import image_folder
from tfx_transfer.data.manifest import manifest
from tfx_transfer.data.pipeline import ImageData, UnusableImagesError, to_one_hot
from tfx_transfer.data.relabel import align_labels
from tfx_transfer.data.replay import select_exemplars
from tfx_transfer.data.segmentation import (
    SegmentationData,
    augment_segmentation,
    mask_folder,
    synthetic_segmentation,
    synthetic_segmentation_arrays,
    tfds_segmentation,
)
from tfx_transfer.data.tfds_source import DatasetUnavailableError, tfds

__all__ = [
    "AnnotationError",
    "ClassStatistics",
    "DatasetUnavailableError",
    "DetectionData",
    "DroppedBoxes",
    "ImageData",
    "SegmentationData",
    "UnusableImagesError",
    "align_labels",
    "arrays",
    "augment",
    "augment_detection",
    "augment_segmentation",
    "augmentation_layers",
    "class_statistics",
    "class_weights",
    "coco_detection",
    "count_degenerate",
    "image_folder",
    "manifest",
    "mask_folder",
    "resample",
    "select_exemplars",
    "shapes",
    "synthetic_detection",
    "synthetic_detection_arrays",
    "synthetic_segmentation",
    "synthetic_segmentation_arrays",
    "tfds",
    "tfds_detection",
    "tfds_segmentation",
    "to_one_hot",
    "voc_detection",
]
