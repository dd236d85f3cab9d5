import keras
import numpy as np
import pytest
from helpers import TINY, random_images

import tfx_transfer as tt
from tfx_transfer.training import Stage


def build():
    keras.utils.set_random_seed(0)
    model = tt.build_classifier(
        "resnet50", 3, weights=None, input_shape=TINY, hidden_units=(8,), dropout=0.0
    )
    tt.training.set_trainable(model, "top_blocks", top_blocks=2)
    return model


def one_sgd_step(model, optimizer):
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(random_images(8), np.arange(8) % 3, batch_size=8, epochs=1, verbose=0)


def test_groups_run_from_early_blocks_to_the_head():
    model = build()
    groups = tt.training.layer_groups(model, 3)
    assert len(groups) == 3
    assert all("conv5_block2" in v.path for v in groups[0])
    assert all("conv5_block3" in v.path for v in groups[1])
    assert {v.path.split("/")[0] for v in groups[2]} == {"head_dense_1", "predictions"}
    assert sum(len(g) for g in groups) == len(model.trainable_weights)
    with pytest.raises(ValueError, match="num_groups must be at least 2"):
        tt.training.layer_groups(model, 1)


def test_each_group_moves_by_its_multiple_of_the_learning_rate_under_sgd():
    plain, discriminative = build(), build()
    start = {v.path: v.numpy().copy() for v in plain.trainable_weights}
    one_sgd_step(plain, keras.optimizers.SGD(0.1))
    pairs = tt.training.discriminative_multipliers(discriminative, num_groups=3, factor=0.5)
    optimizer = tt.training.set_learning_rate_multipliers(keras.optimizers.SGD(0.1), pairs)
    one_sgd_step(discriminative, optimizer)
    assert sorted({m for _, m in pairs}) == [0.25, 0.5, 1.0]
    after_plain = {v.path: v.numpy() for v in plain.trainable_weights}
    checked = 0
    for variable, multiplier in pairs:
        plain_step = after_plain[variable.path] - start[variable.path]
        step = variable.numpy() - start[variable.path]
        if np.abs(plain_step).max() > 1e-6:
            np.testing.assert_allclose(step, multiplier * plain_step, rtol=1e-3, atol=1e-7)
            checked += 1
    assert checked >= 3


def test_stage_option_trains_with_discriminative_rates():
    model = build()
    data = tt.data.arrays(random_images(16), np.arange(16) % 3, batch_size=8)
    stage = Stage(train="top_blocks", top_blocks=2, discriminative_factor=0.3, epochs=1)
    _, history = tt.fine_tune(model, data, stages=[stage], verbose=0)
    assert np.isfinite(history["stage1_loss"]).all()
