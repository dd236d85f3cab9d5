"""Class statistics, balanced class weights and resampling to a target distribution."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from tfx_transfer.data.common import ImageData


@dataclasses.dataclass(frozen=True)
class ClassStatistics:
    """Counts per class, and how unbalanced they are.

    Attributes:
        counts: dict. Class name -> images.
        total: int. All images (for multi-label data, image-class pairs).
        imbalance_ratio: float. Largest count / smallest count.
    """

    counts: dict[str, int]
    total: int
    imbalance_ratio: float

    def __str__(self) -> str:
        width = max(len(name) for name in self.counts)
        lines = [
            f"{name:<{width}}  {count:>7}  {count / self.total:6.1%}"
            for name, count in self.counts.items()
        ]
        lines.append(
            f"{'total':<{width}}  {self.total:>7}  imbalance ratio {self.imbalance_ratio:.1f}"
        )
        return "\n".join(lines)


def class_statistics(data: ImageData | Mapping[str, int]) -> ClassStatistics:
    """Counts, total and imbalance ratio of `data` (an `ImageData` or a counts dict).

    Example:

    >>> print(tt.data.class_statistics(data))
    cat       120   80.0%
    dog        30   20.0%
    total     150  imbalance ratio 4.0
    """
    counts = dict(data.class_counts if isinstance(data, ImageData) else data)
    values = np.array(list(counts.values()), dtype=np.float64)
    ratio = float(values.max() / values.min()) if values.min() > 0 else float("inf")
    return ClassStatistics(counts, int(values.sum()), ratio)


def class_weights(data: ImageData | Mapping[str, int], mode: str = "balanced") -> dict[int, float]:
    """`class_weight` for `model.fit`: "balanced" gives class c the weight
    total / (classes x count_c), so every class weighs the same in the loss.

    Example:

    >>> model.fit(data.train, class_weight=tt.data.class_weights(data))
    """
    if mode != "balanced":
        raise ValueError(f"Unknown class weight mode {mode!r}; expected 'balanced'.")
    counts = list(class_statistics(data).counts.values())
    if min(counts) == 0:
        raise ValueError("A class has no images; balanced class weights are undefined.")
    total = sum(counts)
    return {index: total / (len(counts) * count) for index, count in enumerate(counts)}


def resample(
    data: ImageData,
    target: str | Mapping[str, float] | Sequence[float] = "uniform",
    *,
    batch_size: int = 32,
    seed: int | None = None,
) -> tf.data.Dataset:
    """An endless training stream whose classes follow `target` (rejection resampling).

    Over- and under-sampling happen in `tf.data`, so `fit` sees the intended
    distribution; give `fit` a `steps_per_epoch`.

    Args:
        data: single-label `ImageData` (its `train` split is resampled).
        target: "uniform", {class name: fraction}, or one fraction per class.
        batch_size: int. Batch size of the returned stream.
        seed: int. Seeds the resampling.

    Example:

    >>> stream = tt.data.resample(data, "uniform", batch_size=32, seed=0)
    >>> model.fit(stream, steps_per_epoch=100, epochs=5)
    """
    if data.multi_label:
        raise ValueError("resample works on single-label data; use class weights for multi-label.")
    names = data.class_names
    if isinstance(target, str):
        if target != "uniform":
            raise ValueError(f"Unknown target {target!r}; expected 'uniform', a dict or a list.")
        fractions = np.full(len(names), 1.0 / len(names))
    elif isinstance(target, Mapping):
        unknown = sorted(set(target) - set(names))
        if unknown:
            raise ValueError(f"Target names classes that do not exist: {unknown}.")
        fractions = np.array([float(target.get(name, 0.0)) for name in names])
    else:
        fractions = np.asarray(target, dtype=np.float64)
    if fractions.shape != (len(names),) or fractions.min() < 0 or fractions.sum() <= 0:
        raise ValueError(f"target must give {len(names)} non-negative fractions; got {target!r}.")
    # Splits are stratified, so the training split has the classes' overall proportions.
    counts = np.array([data.class_counts[name] for name in names], dtype=np.float64)
    stream = (
        data.train.unbatch()
        .repeat()
        .rejection_resample(
            lambda image, label: tf.cast(label, tf.int32),
            target_dist=(fractions / fractions.sum()).astype(np.float32),
            initial_dist=(counts / counts.sum()).astype(np.float32),
            seed=seed,
        )
        .map(lambda _, pair: pair, num_parallel_calls=tf.data.AUTOTUNE)
    )
    return stream.batch(batch_size).prefetch(tf.data.AUTOTUNE)
