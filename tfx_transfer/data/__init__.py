"""Data sources that return plain `tf.data` pipelines of (images, labels)."""

from tfx_transfer.data import shapes
from tfx_transfer.data.image_folder import ImageFolder, image_folder

__all__ = ["ImageFolder", "image_folder", "shapes"]
