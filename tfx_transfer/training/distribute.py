"""Choosing a `tf.distribute` strategy and building models inside its scope."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfx_transfer.core.compat import patch_keras_for_multi_worker
from tfx_transfer.training.precision import dtype_policy


def resolve_strategy(strategy: str | tf.distribute.Strategy | None) -> tf.distribute.Strategy:
    """None: the default (no distribution). "auto": MirroredStrategy over all GPUs
    when there are several, OneDeviceStrategy on a single GPU, the default on CPU.
    A `tf.distribute.Strategy` is used as it is (for MultiWorkerMirroredStrategy,
    built from `TF_CONFIG`, Keras gets the fixes of `multi_worker.py`).

    The batch size of your `tf.data` pipeline is the global batch: each of N
    replicas gets 1/N of every batch (use `drop_remainder=True` for equal shares).
    """
    if strategy is None:
        return tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        patch_keras_for_multi_worker()
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy != "auto":
        raise ValueError(
            f"strategy must be None, 'auto' or a tf.distribute.Strategy; got {strategy!r}."
        )
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    if gpus:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    return tf.distribute.get_strategy()


def build_in_scope(
    model_or_builder, strategy: tf.distribute.Strategy, policy: str = "float32"
) -> keras.Model:
    """Calls a builder inside `strategy.scope()` under the dtype `policy`; a model
    built outside the scope is rebuilt inside it from its config and weights
    (trainable flags, BatchNorm statistics, dtypes and class metadata included)."""
    if isinstance(model_or_builder, keras.Model) and policy != "float32":
        if model_or_builder.dtype_policy.name != policy:
            raise ValueError(
                f"Model {model_or_builder.name!r} was built with dtype policy "
                f"{model_or_builder.dtype_policy.name!r}; to train it in {policy!r}, pass a "
                "function that builds it (fine_tune builds it under that policy)."
            )
    with strategy.scope():
        if not isinstance(model_or_builder, keras.Model):
            with dtype_policy(policy):
                return model_or_builder()
        if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
            return model_or_builder
        model = model_or_builder
        rebuilt = model.__class__.from_config(model.get_config())
        rebuilt.set_weights(model.get_weights())
        return rebuilt
