"""Small shared helpers for the tests."""

from __future__ import annotations

import numpy as np

import tfx_transfer as tt

TINY = (32, 32, 3)


def tiny_classifier(num_classes: int = 5, **kwargs):
    """A small classifier on mobilenet_v3_small at 32x32, random weights."""
    options = {"weights": None, "input_shape": TINY, "hidden_units": (16,)}
    options.update(kwargs)
    return tt.build_classifier("mobilenet_v3_small", num_classes, **options)


def random_images(count: int, shape=TINY, seed: int = 0) -> np.ndarray:
    """Raw 0..255 float32 pixels."""
    return np.random.default_rng(seed).uniform(0, 255, (count, *shape)).astype("float32")


def conv_classifier(num_classes: int = 4, **kwargs):
    """A classifier on a two-layer conv backbone whose outputs vary with the input."""
    import keras

    backbone = keras.Sequential(
        [
            keras.Input(TINY),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
        ],
        name="conv_backbone",
    )
    options = {"preprocessing": "none", "hidden_units": (16,), "dropout": 0.0}
    options.update(kwargs)
    return tt.build_classifier(backbone, num_classes, **options)


def logits(model, images) -> np.ndarray:
    """The output of a functional model's classification layer (before any activation)."""
    import keras

    from tfx_transfer.surgery import locate_classifier

    layer = locate_classifier(model).layer
    return keras.Model(model.inputs, layer.output).predict(images, verbose=0)


def assert_bit_exact_old(old_model, new_model, images) -> None:
    """The new model's logits for the old classes equal the old model's exactly."""
    old_logits = logits(old_model, images)
    new_logits = logits(new_model, images)[:, : old_logits.shape[1]]
    assert np.max(np.abs(new_logits - old_logits)) == 0.0


def assert_user_error(result, *fragments, status=2):
    """A command ended with one `error: ...` line naming `fragments`, exit `status`, no
    traceback."""
    assert result.returncode == status, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ")
    for fragment in fragments:
        assert fragment in message, message
