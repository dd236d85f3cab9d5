"""The only door to Keras and TensorFlow internals.

No other module imports `keras.src` or `tensorflow.python`, reads private
attributes of Keras objects that are not graph structure (see `core/graph`), or
patches a library. Each shim names what it stands in for and is written for the
Keras versions in `TESTED_KERAS`; tests/core/test_compat.py checks each one
against the installed Keras, so an upgrade that breaks one fails there first.
"""

from __future__ import annotations

import collections
import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import keras
import tensorflow as tf

TESTED_KERAS = ("3.14.", "3.15.")


def keras_is_tested() -> bool:
    """Whether the installed Keras is one the shims here were written and tested for."""
    return keras.version().startswith(TESTED_KERAS)


@contextlib.contextmanager
def fresh_layer_names() -> Iterator[None]:
    """Builds inside the block start Keras' automatic layer names from a fresh counter.

    Keras numbers auto-named layers per session ("activation_4"); backbones are
    built from a fresh counter so that their layer names are the registry's.
    Stands in for a public way to reset `keras.src.backend.common.global_state`'s
    "object_name_uids" (Keras has `keras.backend.clear_session`, which also drops
    every model).

    Example:

    >>> with fresh_layer_names():
    ...     model = keras.applications.MobileNetV3Small(weights=None)
    """
    from keras.src.backend.common import global_state

    saved = global_state.get_global_attribute("object_name_uids")
    global_state.set_global_attribute("object_name_uids", collections.defaultdict(int))
    try:
        yield
    finally:
        global_state.set_global_attribute("object_name_uids", saved)


def keras_home() -> str:
    """Keras' cache root (`~/.keras` unless `KERAS_HOME` says otherwise)."""
    from keras.src.backend import config as keras_config

    return keras_config.keras_home()


@contextlib.contextmanager
def wrapped_get_file(wrap: Callable[[Callable[..., str]], Callable[..., str]]) -> Iterator[None]:
    """Inside the block, `keras.utils.get_file` as `keras.applications` calls it is
    `wrap(original get_file)` (used to turn a failed download into a clear error).

    Example:

    >>> with wrapped_get_file(lambda get_file: get_file):
    ...     keras.applications.ResNet50()
    """
    from keras.src.utils import file_utils

    original = file_utils.get_file
    file_utils.get_file = wrap(original)
    try:
        yield
    finally:
        file_utils.get_file = original


def variable_key(optimizer: keras.optimizers.Optimizer, variable: Any) -> Any:
    """The key by which `optimizer` tells its variables apart (Keras' `_var_key`).

    Example:

    >>> variable_key(model.optimizer, model.trainable_variables[0])
    """
    return optimizer._var_key(variable)


def frozen_graph(function: Any) -> tf.Graph:
    """The graph of a concrete `tf.function` with its variables folded into constants."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    return convert_variables_to_constants_v2(function).graph


def operation_flops(graph: tf.Graph, node_def: Any) -> Any:
    """The profiler's FLOP statistics of one node (raises `ValueError` for unknown shapes)."""
    from tensorflow.python.framework import ops

    return ops.get_stats_for_node_def(graph, node_def, "flops")


@contextlib.contextmanager
def silenced_deprecations() -> Iterator[None]:
    """TensorFlow's deprecation warnings off inside the block."""
    from tensorflow.python.util import deprecation

    with deprecation.silence():
        yield


def patch_keras_for_multi_worker() -> bool:
    """Applies the two fixes once; returns whether Keras is patched."""
    from keras.src.backend.tensorflow import trainer as tensorflow_trainer

    if getattr(tensorflow_trainer, "_tfx_transfer_multi_worker_patch", False):
        return True
    if not keras_is_tested():
        warnings.warn(
            f"MultiWorkerMirroredStrategy fixes are written for Keras {TESTED_KERAS}; "
            f"Keras {keras.version()} is left as it is.",
            stacklevel=2,
        )
        return False
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tensorflow_trainer

    original_build = tensorflow_trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = tensorflow_trainer.reduce_per_replica

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None or iterator is None:
            return original_build(self, iterator, data_batch)
        strategy = self.distribute_strategy
        for _, _, batches in iterator:
            data_batch = tree.map_structure(
                lambda value: (
                    strategy.experimental_local_results(value)[0]
                    if isinstance(value, tf.distribute.DistributedValues)
                    else value
                ),
                next(batches),
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tensorflow_trainer._collective_all_reduce_multi_worker(
            strategy
        ):

            def reduce(value):
                local = (
                    strategy.experimental_local_results(value)[0]
                    if isinstance(value, tf.distribute.DistributedValues)
                    else value
                )
                axis = None if local.shape.rank == 0 else 0
                return strategy.reduce("MEAN", value, axis=axis)

            return tree.map_structure(reduce, values)
        return original_reduce(values, strategy, reduction)

    tensorflow_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    tensorflow_trainer.reduce_per_replica = reduce_per_replica
    tensorflow_trainer._tfx_transfer_multi_worker_patch = True
    return True
