import numpy as np
import pytest
import tensorflow as tf
from helpers import conv_classifier, random_images

import tfx_transfer as tt


def test_range_test_records_losses_restores_weights_and_plots(tmp_path):
    model = conv_classifier(3)
    data = tf.data.Dataset.from_tensor_slices((random_images(32), np.arange(32) % 3)).batch(8)
    before = [w.numpy().copy() for w in model.weights]
    result = tt.training.lr_find(
        model, data, min_learning_rate=1e-6, max_learning_rate=1e2, steps=40
    )
    for b, w in zip(before, model.weights):
        np.testing.assert_array_equal(b, w.numpy())
    rates = np.array(result.learning_rates)
    assert rates[0] == pytest.approx(1e-6) and np.all(np.diff(np.log(rates)) > 0)
    assert len(result.losses) == len(rates) <= 40
    assert len(rates) < 40 or not np.all(
        np.isfinite(result.losses)
    )  # stopped when the loss exploded
    assert 1e-7 <= result.suggestion <= 10
    path = result.plot(tmp_path / "lr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="min_learning_rate < max_learning_rate"):
        tt.training.lr_find(model, data, min_learning_rate=1.0, max_learning_rate=0.1)
