"""Safe loading of models that use the toolkit's registered layers."""

from __future__ import annotations

import os

import keras

# Importing these modules registers their serializable classes with Keras.
from tfx_transfer import metadata, preprocessing  # noqa: F401
from tfx_transfer.surgery import layers  # noqa: F401


def load_model(path: str | os.PathLike, *, compile: bool = True) -> keras.Model:
    """Loads a `.keras` model with `safe_mode=True` (no arbitrary code runs).

    The toolkit's layers and `TransferModel` are registered Keras objects, so
    models saved with `model.save("model.keras")` load here with their class
    metadata.

    Example:

    >>> model.save("flowers.keras")
    >>> tt.class_info(tt.load_model("flowers.keras")).class_names
    ('daisy', 'rose', 'tulip')
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model file at {path!r}.")
    if not path.endswith(".keras"):
        raise ValueError(
            f"tt.load_model reads Keras v3 `.keras` files; got {path!r}. For a SavedModel "
            "directory use tf.saved_model.load."
        )
    return keras.saving.load_model(path, compile=compile, safe_mode=True)
