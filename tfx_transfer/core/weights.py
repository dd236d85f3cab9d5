"""The one place that resolves `weights="imagenet" | <file> | None`.

ImageNet weights come through Keras' own cached, hash-checked download. When
that download fails (offline), the error names the file Keras wanted, where it
looks for it and its hash, and how to pass a local file instead.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from tfx_transfer.core.compat import keras_home, wrapped_get_file

Weights = str | os.PathLike | None
WEIGHT_FILE_SUFFIXES = (".weights.h5", ".h5", ".hdf5")


class WeightsUnavailableError(OSError):
    """Pre-trained weights could not be downloaded or found."""


def resolve_weights(weights: Weights, *, owner: str) -> str | None:
    """Validates `weights` and returns "imagenet", a file path or None.

    Args:
        weights: "imagenet", a path to a weights file, or None (random init).
        owner: str. The model the weights are for, named in error messages.
    """
    if weights is None or weights == "imagenet":
        return weights
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"weights for {owner!r} must be 'imagenet', a file path or None; got {weights!r}."
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"Weights file for {owner!r} not found: {str(path)!r}. Pass weights='imagenet' "
            "(downloads from the Keras servers), weights=None, or the path of an existing file."
        )
    if not path.name.endswith(WEIGHT_FILE_SUFFIXES):
        raise ValueError(
            f"Weights file {str(path)!r} for {owner!r} must end in one of "
            f"{WEIGHT_FILE_SUFFIXES} (a Keras `save_weights` file or a Keras ImageNet "
            "`*_notop.h5` file)."
        )
    return str(path)


@contextlib.contextmanager
def explain_download_failures(owner: str) -> Iterator[None]:
    """Turns a failed weights download inside the block into `WeightsUnavailableError`.

    `keras.applications` constructors fetch their weights with
    `keras.utils.get_file`; inside this block that call is observed so that a
    failure names the requested file, its cache path and hash.
    """

    def explaining(original_get_file):
        def get_file(fname=None, origin=None, *args, **kwargs):
            try:
                return original_get_file(fname, origin, *args, **kwargs)
            except Exception as error:
                raise WeightsUnavailableError(
                    _offline_message(owner, fname, origin, kwargs, error)
                ) from error

        return get_file

    with wrapped_get_file(explaining):
        yield


def _offline_message(owner, fname, origin, kwargs, error) -> str:
    cache_dir = kwargs.get("cache_dir") or keras_home()
    cache_path = Path(cache_dir).expanduser() / kwargs.get("cache_subdir", "datasets") / fname
    file_hash = kwargs.get("file_hash") or "not checked"
    return (
        f"Could not download the ImageNet weights of {owner!r} ({error}).\n"
        f"  file:   {fname}\n"
        f"  from:   {origin}\n"
        f"  cache:  {cache_path}\n"
        f"  hash:   {file_hash}\n"
        "Copy that file to the cache path on this machine (Keras then uses it without "
        "downloading), or pass weights='<path to a weights file>' (for instance one saved "
        "with `backbone.save_weights('backbone.weights.h5')`), or weights=None."
    )
