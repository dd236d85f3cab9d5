"""`arrays`: labelled images already in memory."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tfx_transfer.data.common import (
    ImageData,
    array_pipeline,
    assemble,
    counts_by_class,
    split_indices,
)


def arrays(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    class_names: Sequence[str] | None = None,
    batch_size: int = 32,
    validation_split: float | None = None,
    test_split: float | None = None,
    seed: int | None = None,
) -> ImageData:
    """Wraps numpy images (N, H, W, 3), 0..255, and labels as `ImageData`.

    Labels are class indices (N,) or multi-hot rows (N, C). Splits are
    stratified and the same for the same seed.

    Example:

    >>> data = tt.data.arrays(x, y, class_names=["cat", "dog"], validation_split=0.2)
    >>> model.fit(data.train, validation_data=data.validation)
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (N, height, width, 3) RGB; got shape {images.shape}.")
    if len(images) != len(labels):
        raise ValueError(f"Got {len(images)} images but {len(labels)} labels.")
    multi_label = labels.ndim == 2
    labels = labels.astype(np.float32 if multi_label else np.int32)
    num_classes = labels.shape[1] if multi_label else int(labels.max()) + 1
    names = (
        list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
    )
    if not multi_label and (labels.min() < 0 or labels.max() >= len(names)):
        raise ValueError(f"Labels must be in 0..{len(names) - 1} for {len(names)} class names.")
    if multi_label and labels.shape[1] != len(names):
        raise ValueError(f"Multi-hot labels have {labels.shape[1]} columns but {len(names)} names.")
    splits = split_indices(
        labels, validation_split=validation_split, test_split=test_split, seed=seed
    )

    def pipeline(indices, shuffle):
        return array_pipeline(
            images[indices], labels[indices], batch_size=batch_size, shuffle=shuffle, seed=seed
        )

    return assemble(
        pipeline,
        splits,
        class_names=names,
        class_counts=counts_by_class(labels, names),
        multi_label=multi_label,
    )
