"""`model_cost` and `cost_table`: parameter counts and profiler FLOPs of small models."""

from __future__ import annotations

import re

import keras
import pytest
import tensorflow as tf

from tfx_transfer.core.cost import ModelCost, cost_table, model_cost

# What TensorFlow's profiler counts, which the expectations below follow: MatMul and Conv2D
# 2 FLOPs per multiply-add, BiasAdd 1 per output element, activations (ReLU) and
# Concatenate nothing.


def dense_model(branch: bool = False) -> keras.Model:
    """8 -> Dense(16, relu) -> Dense(4); with `branch`, a Dense(3) beside the Dense(4)."""
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(4, name="head")(hidden)
    if branch:
        extra = keras.layers.Dense(3, name="branch")(hidden)
        outputs = keras.layers.Concatenate()([outputs, extra])
    return keras.Model(inputs, outputs, name="with_branch" if branch else "base")


def conv_model(spatial: int | None = 10) -> keras.Model:
    inputs = keras.Input((spatial, spatial, 3))
    return keras.Model(inputs, keras.layers.Conv2D(5, 3)(inputs), name="conv")


def test_dense_without_bias_costs_one_multiply_add_per_weight(capfd):
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(4, use_bias=False)(inputs))

    cost = model_cost(model)

    assert cost == ModelCost(
        parameters=32, trainable_parameters=32, flops=2 * 8 * 4, input_shape=(8,)
    )
    assert capfd.readouterr().out == ""  # The profiler prints nothing.


def test_conv_flops_follow_the_convolution_formula():
    out_h = out_w = 10 - 3 + 1  # "valid" padding, stride 1
    multiply_adds = out_h * out_w * 3 * 3 * 3 * 5  # k_h * k_w * c_in * c_out per output pixel
    bias_adds = out_h * out_w * 5

    cost = model_cost(conv_model())

    assert cost.flops == 2 * multiply_adds + bias_adds
    assert cost.parameters == 3 * 3 * 3 * 5 + 5
    assert cost.input_shape == (10, 10, 3)


def test_a_dense_branch_adds_exactly_its_weights():
    base, wider = model_cost(dense_model()), model_cost(dense_model(branch=True))
    branch_weights = 16 * 3 + 3

    assert base.parameters == 8 * 16 + 16 + 16 * 4 + 4
    assert wider.parameters - base.parameters == branch_weights
    assert wider.flops - base.flops == 2 * 16 * 3 + 3
    change = wider.relative_to(base)
    assert change["parameters"] == pytest.approx(branch_weights / base.parameters)
    assert change["flops"] == pytest.approx((2 * 16 * 3 + 3) / base.flops)
    assert base.relative_to(base) == {"parameters": 0.0, "flops": 0.0}


def test_frozen_weights_count_as_parameters_but_not_trainable():
    model = dense_model()
    model.get_layer("hidden").trainable = False

    cost = model_cost(model)

    assert cost.parameters == model.count_params()
    assert cost.trainable_parameters == cost.parameters - (8 * 16 + 16)


def test_cost_table_compares_every_row_to_the_first():
    base, wider = dense_model(), dense_model(branch=True)

    table = cost_table({"base": base, "with branch": wider})

    header, first, second = table.splitlines()
    assert "parameters" in header and "FLOPs" in header
    assert first.startswith("base") and "(reference)" in first
    assert second.startswith("with branch")
    expected = wider.count_params() / base.count_params() - 1
    assert f"+{expected * 100:.2f}%" in second
    assert re.search(r"\+\d+\.\d\d%", second)


def test_cost_table_prints_human_readable_counts():
    reference = ModelCost(25_600_000, 25_600_000, 4_100_000_000, (224, 224, 3))
    bigger = ModelCost(26_400_000, 26_400_000, 4_100_000_000, (224, 224, 3))

    table = cost_table({"a": reference, "b": bigger})

    assert "25.6 M" in table and "4.1 G" in table
    assert "+3.12%" in table and "+0.00%" in table


def test_unknown_spatial_size_needs_input_shape():
    model = conv_model(spatial=None)

    with pytest.raises(ValueError, match=r"'conv'.*input_shape=\(h, w, c\)"):
        model_cost(model)
    assert model_cost(model, input_shape=(10, 10, 3)).flops == model_cost(conv_model()).flops


def test_shapes_known_only_at_run_time_warn_of_uncounted_flops():
    class KeepPositive(keras.layers.Layer):
        def call(self, x):
            return tf.boolean_mask(x, x > 0) * 2.0  # The mask's size depends on the values.

    inputs = keras.Input((8,))
    model = keras.Model(inputs, KeepPositive()(inputs), name="dynamic")

    with pytest.warns(UserWarning, match="'dynamic'.*0 FLOPs"):
        model_cost(model)


def test_detector_cost():
    import tfx_transfer as tt

    detector = tt.build_detector("retinanet", "resnet50", 3, weights=None, input_shape=(64, 64, 3))

    cost = model_cost(detector)

    assert cost.flops > 0
    assert cost.parameters == detector.count_params()
    assert cost.input_shape == (64, 64, 3)
