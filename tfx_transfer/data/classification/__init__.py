"""Image classification sources (folders, manifests, arrays, TFDS), class balance,
relabelling, exemplar replay and augmentation layers."""
