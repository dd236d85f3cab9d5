"""Classification heads: pooling, dropout, hidden Dense layers, `predictions`."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from tfx_transfer.heads.locate import PREDICTIONS

POOLINGS = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}


def classification_head(
    features,
    num_classes: int,
    *,
    hidden_units: Sequence[int] = (1024,),
    dropout: float = 0.2,
    pooling: str = "avg",
):
    """Applies a classification head to a feature map and returns the logits.

    Layers, in order: `head_pool` (global pooling), `head_dropout`,
    `head_dense_1`... (ReLU, one per entry of `hidden_units`) and `predictions`
    (linear, float32 even under mixed precision: the kernel is hidden_units[-1] x
    num_classes).

    Args:
        features: a 4D symbolic tensor (batch, height, width, channels).
        num_classes: int. Width of `predictions`.
        hidden_units: sequence of int. Hidden Dense widths; () for none.
        dropout: float. Dropout rate after pooling (0 disables).
        pooling: str. "avg" or "max".

    Example:

    >>> features = keras.Input((7, 7, 512))
    >>> logits = classification_head(features, 90)
    >>> logits.shape
    (None, 90)
    """
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; expected one of {sorted(POOLINGS)}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout}.")
    x = POOLINGS[pooling](name="head_pool")(features)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    for index, units in enumerate(hidden_units, start=1):
        if int(units) < 1:
            raise ValueError(f"hidden_units must be positive integers; got {list(hidden_units)}.")
        x = keras.layers.Dense(int(units), activation="relu", name=f"head_dense_{index}")(x)
    # Logits stay float32 under mixed precision.
    return keras.layers.Dense(num_classes, name=PREDICTIONS, dtype="float32")(x)
