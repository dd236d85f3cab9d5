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


def test_faster_rcnn_trains_under_mixed_bfloat16_with_float32_class_and_box_layers():
    data = tt.data.synthetic_detection(
        4, image_size=64, classes=["red_circle", "blue_triangle"], batch_size=4
    )
    model, history = tt.fine_tune(
        lambda: tt.build_detector(
            "faster_rcnn", "mobilenet_v3_small", 2, weights=None, input_shape=(64, 64, 3),
            feature_channels=16, head_units=32, roi_samples=16, train_proposals=16,
        ),
        data,
        stages=[Stage(train="head", epochs=1)],
        mixed_precision="mixed_bfloat16",
        verbose=0,
    )  # fmt: skip
    assert model.get_layer("box_head_dense_1").compute_dtype == "bfloat16"
    for name in ("box_classifier", "box_regressor"):
        assert model.get_layer(name).compute_dtype == "float32"
    assert model(np.zeros((1, 64, 64, 3), "float32"))["classification"].dtype == "float32"
    assert all(np.isfinite(history[f"stage1_{loss}"]).all() for loss in ("loss", "box_loss"))
    assert keras.config.dtype_policy().name == "float32"


def test_precision_choices_and_errors():
    assert resolve_precision(None) == "float32"
    assert resolve_precision("auto") == "float32"  # no GPU here
    with pytest.raises(ValueError, match="mixed_precision must be None, 'auto' or one of"):
        resolve_precision("half")
    data = tf.data.Dataset.from_tensor_slices((random_images(8), np.arange(8) % 3)).batch(8)
    with pytest.raises(ValueError, match="pass a function that builds it"):
        tt.fine_tune(tiny_classifier(3), data, mixed_precision="mixed_bfloat16", verbose=0)
