"""Exemplar replay: keep k images per old class to train on next to the new ones."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def select_exemplars(
    labels: Sequence[int] | np.ndarray,
    per_class: int,
    *,
    classes: Sequence[int] | None = None,
    embeddings: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Indices of `per_class` examples of each class, to replay while new classes train.

    Without embeddings the examples are drawn at random (the same for the same
    seed). With embeddings (e.g. the penultimate layer's outputs), they are
    chosen by herding as in iCaRL (Rebuffi et al. 2017): each next example is
    the one that brings the mean of those chosen closest to the class mean.
    A class with fewer than `per_class` examples contributes all of them.

    Args:
        labels: int class of every example.
        per_class: int >= 1.
        classes: the classes to keep (default: every class in `labels`).
        embeddings: (examples, features) array, or None.
        seed: int. For the random choice.

    Returns:
        Sorted int64 indices into `labels`.

    Example:

    >>> keep = tt.data.select_exemplars(old_labels, per_class=5)
    >>> images = np.concatenate([new_images, old_images[keep]])
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1; got {per_class}.")
    if embeddings is not None and len(embeddings) != len(labels):
        raise ValueError(f"Got {len(embeddings)} embeddings for {len(labels)} labels.")
    wanted = np.unique(labels) if classes is None else np.asarray(classes, np.int64)
    missing = sorted(set(wanted.tolist()) - set(labels.tolist()))
    if missing:
        raise ValueError(f"Classes {missing} have no examples to keep.")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in wanted:
        members = np.flatnonzero(labels == label)
        if embeddings is None:
            chosen.append(rng.permutation(members)[:per_class])
        else:
            chosen.append(members[_herding(np.asarray(embeddings[members], np.float64), per_class)])
    return np.sort(np.concatenate(chosen))


def _herding(features: np.ndarray, count: int) -> list[int]:
    """Positions of `count` rows whose running mean tracks the mean of all rows."""
    target = features.mean(axis=0)
    chosen: list[int] = []
    total = np.zeros_like(target)
    for step in range(1, min(count, len(features)) + 1):
        distances = np.linalg.norm(target - (total + features) / step, axis=1)
        distances[chosen] = np.inf
        best = int(np.argmin(distances))
        chosen.append(best)
        total += features[best]
    return chosen
