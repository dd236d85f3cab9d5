"""Fail fast, with a clear message, when Keras is not set to run on TensorFlow.

Checked without importing Keras (so `import tfx_transfer` stays instant): the
`KERAS_BACKEND` environment variable, else the `backend` of Keras' config file
(`$KERAS_HOME/keras.json`, by default `~/.keras/keras.json`), as Keras itself
decides at import.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REQUIRED_BACKEND = "tensorflow"


def check_backend() -> None:
    """Raises ImportError unless Keras uses (or will use) the TensorFlow backend.

    Example:

    >>> os.environ["KERAS_BACKEND"] = "jax"
    >>> check_backend()
    Traceback (most recent call last):
    ImportError: tfx_transfer needs the TensorFlow backend of Keras, ...
    """
    requested = os.environ.get("KERAS_BACKEND")
    if requested:
        if requested != REQUIRED_BACKEND:
            raise ImportError(_message(requested, "the KERAS_BACKEND environment variable"))
        return
    configured = configured_backend()
    if configured is not None and configured != REQUIRED_BACKEND:
        raise ImportError(_message(configured, f"the Keras configuration ({config_path()})"))


def config_path() -> Path:
    """Where Keras reads its configuration file."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "keras.json"


def configured_backend() -> str | None:
    """The backend named in Keras' configuration file, or None when there is none."""
    try:
        backend = json.loads(config_path().read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return str(backend) if backend else None


def _message(backend: str, source: str) -> str:
    return (
        f"tfx_transfer needs the TensorFlow backend of Keras, but {source} selects "
        f"{backend!r}. Set KERAS_BACKEND=tensorflow (or unset it) before importing "
        "keras or tfx_transfer."
    )
