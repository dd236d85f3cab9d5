import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import random_images, tiny_classifier

import tfx_transfer as tt
from tfx_transfer.training import Stage
from tfx_transfer.training.precision import resolve_precision


def test_mixed_bfloat16_builds_under_the_policy_and_keeps_logits_float32():
    data = tf.data.Dataset.from_tensor_slices((random_images(16), np.arange(16) % 3)).batch(8)
    model, history = tt.fine_tune(
        lambda: tiny_classifier(3),
        data,
        stages=[Stage(epochs=1, jit_compile=False)],
        mixed_precision="mixed_bfloat16",
        verbose=0,
    )
    assert model.get_layer("head_dense_1").compute_dtype == "bfloat16"
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert model.output.dtype == "float32"
    assert model.get_layer("head_dense_1").kernel.dtype == "float32"  # variables stay float32
    assert np.isfinite(history["stage1_loss"]).all()
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert model.jit_compile is False


def test_precision_choices_and_errors():
    assert resolve_precision(None) == "float32"
    assert resolve_precision("auto") == "float32"  # no GPU here
    with pytest.raises(ValueError, match="mixed_precision must be None, 'auto' or one of"):
        resolve_precision("half")
    data = tf.data.Dataset.from_tensor_slices((random_images(8), np.arange(8) % 3)).batch(8)
    with pytest.raises(ValueError, match="pass a function that builds it"):
        tt.fine_tune(tiny_classifier(3), data, mixed_precision="mixed_bfloat16", verbose=0)
