"""Exact resume after a kill: training state saved atomically at each epoch end.

One mechanism for `tt.fine_tune(checkpoint_dir=...)` and `fit_resumable`: groups
of variables (model, optimizer, ...) written to one `.npz` keyed by each
variable's path (not its position), with the previous state kept as a fallback.

`fit_resumable` makes everything random in a run a function of (seed, epoch) or
part of the saved state: the data order of epoch e is a stateless permutation
seeded by (seed, e), and the saved state holds every model variable (weights,
BatchNorm statistics, Dropout seed generators) and the optimizer's variables.
A run killed at any moment, even while writing a checkpoint, restarts from the
last complete epoch and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfx_transfer.core.io import write_atomically

STATE_FILE = "state.npz"
_AUTOMATIC_NUMBER = re.compile(r"_\d+(?=/|$)")
PREVIOUS_FILE = "state.previous.npz"


def save_state(directory: str | os.PathLike, model: keras.Model, epochs_done: int) -> Path:
    """Writes the model's and optimizer's variables atomically; the previous state
    is kept as a fallback."""
    return write_state(
        directory,
        {"epochs_done": epochs_done},
        model=model.variables,
        optimizer=model.optimizer.variables,
    )


def load_state(directory: str | os.PathLike, model: keras.Model) -> int:
    """Restores the newest readable state into `model` (compiled); returns the
    number of completed epochs (0 when there is none)."""
    model.optimizer.build(model.trainable_variables)
    state = read_state(directory)
    if state is None:
        return 0
    assign_state(state, "model", model.variables)
    assign_state(state, "optimizer", model.optimizer.variables)
    return int(state["info"]["epochs_done"])


def write_state(directory: str | os.PathLike, info: dict[str, Any], **groups: list) -> Path:
    """Writes groups of variables, each keyed by its path, and JSON-able `info` to
    `directory/state.npz` atomically (fsync, then rename), keeping the previous
    state as a fallback.

    Example:

    >>> write_state("run/state", {"epochs_done": 3}, model=m.variables, optimizer=o.variables)
    """
    arrays = {
        key: keras.ops.convert_to_numpy(variable)
        for group, variables in groups.items()
        for key, variable in _keyed(group, variables).items()
    }
    arrays["epochs_done"] = np.array(info.get("epochs_done", 0))
    arrays["info"] = np.array(json.dumps(info))

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)

    directory = Path(directory)
    return write_atomically(
        directory / STATE_FILE, write, previous=directory / PREVIOUS_FILE, sync=True
    )


def read_state(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The newest readable state in `directory` ({"info", "arrays"}), or None."""
    for name in (STATE_FILE, PREVIOUS_FILE):
        path = Path(directory) / name
        if not path.exists():
            continue
        try:
            with np.load(path) as state:
                arrays = {key: state[key] for key in state.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):
            continue  # a damaged file: fall back to the previous state
        return {"info": json.loads(str(arrays.pop("info"))), "arrays": arrays}
    return None


def assign_state(state: dict[str, Any], group: str, variables: list) -> None:
    """Assigns the saved values of `group` to `variables`, matched by path.

    Raises:
        ValueError: naming the variables the state does not hold (it was saved
            from another model).
    """
    keyed = _keyed(group, variables)
    missing = [key for key in keyed if key not in state["arrays"]]
    if missing:
        raise ValueError(
            f"The saved training state has no values for {len(missing)} variables of "
            f"{group!r} (first: {missing[:3]}); it was saved from another model. Use a new "
            "checkpoint directory, or delete this one to start over."
        )
    for key, variable in keyed.items():
        variable.assign(state["arrays"][key])


def _keyed(group: str, variables: list) -> dict[str, Any]:
    """{"group/variable path": variable}, Keras' automatic numbering left out of each
    part of the path ("adam_1/..." and "adam/..." are the same optimizer when a resumed
    run builds fewer of them); a key seen again gets "#2", "#3", ... in order."""
    keyed: dict[str, Any] = {}
    for variable in variables:
        path = _AUTOMATIC_NUMBER.sub("", variable.path)
        key = f"{group}/{path}"
        count = 1
        while key in keyed:
            count += 1
            key = f"{group}/{path}#{count}"
        keyed[key] = variable
    return keyed


class SaveStateEachEpoch(keras.callbacks.Callback):
    """Calls `save_state` at the end of every epoch."""

    def __init__(self, directory: str | os.PathLike) -> None:
        super().__init__()
        self.directory = directory

    def on_epoch_end(self, epoch, logs=None):
        save_state(self.directory, self.model, epoch + 1)


def fit_resumable(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    directory: str | os.PathLike,
    seed: int = 0,
    callbacks: list[keras.callbacks.Callback] | None = None,
    verbose: int | str = 0,
) -> keras.callbacks.History:
    """`model.fit` on in-memory data that resumes exactly after a kill.

    Call it again with the same arguments after an interruption: it continues
    from the last completed epoch. The model must be compiled.

    Example:

    >>> model.compile(...)
    >>> tt.training.fit_resumable(model, x, y, epochs=10, batch_size=32, directory="run/state")
    """
    start = load_state(directory, model)
    count = len(labels)
    data = tf.data.Dataset.range(start, epochs).flat_map(
        lambda epoch: _epoch(images, labels, epoch, seed, batch_size)
    )
    return model.fit(
        data,
        epochs=epochs,
        initial_epoch=start,
        steps_per_epoch=math.ceil(count / batch_size),
        callbacks=[*(callbacks or []), SaveStateEachEpoch(directory)],
        verbose=verbose,
    )


def _epoch(images, labels, epoch, seed: int, batch_size: int) -> tf.data.Dataset:
    """The examples of one epoch in an order that depends only on (seed, epoch)."""
    count = len(labels)
    order = tf.random.experimental.index_shuffle(
        tf.range(count, dtype=tf.int64),
        seed=tf.stack([tf.constant(seed, tf.int64), epoch]),
        max_index=count - 1,
    )
    return (
        tf.data.Dataset.from_tensor_slices(order)
        .map(lambda i: (tf.gather(images, i), tf.gather(labels, i)))
        .batch(batch_size)
    )
