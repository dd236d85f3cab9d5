"""Fail fast, with a clear message, when Keras is not running on TensorFlow."""

from __future__ import annotations

import os

REQUIRED_BACKEND = "tensorflow"


def check_backend() -> None:
    """Raises ImportError unless Keras uses (or will use) the TensorFlow backend.

    Checked before Keras is imported (the `KERAS_BACKEND` environment variable)
    and after (`keras.config.backend()`, which also reflects `~/.keras/keras.json`).
    """
    requested = os.environ.get("KERAS_BACKEND")
    if requested and requested != REQUIRED_BACKEND:
        raise ImportError(_message(requested, "the KERAS_BACKEND environment variable"))
    import keras

    active = keras.config.backend()
    if active != REQUIRED_BACKEND:
        raise ImportError(_message(active, "the Keras configuration (~/.keras/keras.json)"))


def _message(backend: str, source: str) -> str:
    return (
        f"tfx_transfer needs the TensorFlow backend of Keras, but {source} selects "
        f"{backend!r}. Set KERAS_BACKEND=tensorflow (or unset it) before importing "
        "keras or tfx_transfer."
    )
