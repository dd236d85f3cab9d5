"""MultiWorkerMirroredStrategy with Keras 3 `fit`: two small fixes, isolated here.

Keras 3 (up to at least 3.15) fails to `fit` under MultiWorkerMirroredStrategy
(keras-team/keras#20585): its symbolic build receives the first batch as
per-replica values, and its metric reduction averages scalars along axis 0
("Invalid reduction dimension 0"). `patch_keras_for_multi_worker` takes the
local value of the first batch for the build and reduces scalars with
axis=None. It only applies to the Keras versions it was written and tested for.
"""

from __future__ import annotations

import warnings

import keras
import tensorflow as tf
from keras.src import tree
from keras.src.backend.tensorflow import trainer as tensorflow_trainer

PATCHED_KERAS_VERSIONS = ("3.14.", "3.15.")


def patch_keras_for_multi_worker() -> bool:
    """Applies the two fixes once; returns whether Keras is patched."""
    if getattr(tensorflow_trainer, "_tfx_transfer_multi_worker_patch", False):
        return True
    if not keras.version().startswith(PATCHED_KERAS_VERSIONS):
        warnings.warn(
            f"MultiWorkerMirroredStrategy fixes are written for Keras {PATCHED_KERAS_VERSIONS}; "
            f"Keras {keras.version()} is left as it is.",
            stacklevel=2,
        )
        return False
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
