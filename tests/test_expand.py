import keras
import numpy as np
import pytest
from helpers import TINY, assert_bit_exact_old, conv_classifier, random_images, tiny_classifier

import tfx_transfer as tt
from tfx_transfer.surgery import ColumnBlockDense, locate_classifier


@pytest.mark.parametrize(
    "make",
    [
        lambda: tiny_classifier(90, hidden_units=(1024,)),
        lambda: tiny_classifier(7, hidden_units=(), activation="softmax"),
        lambda: conv_classifier(5, hidden_units=(64, 32)),
        lambda: tt.build_classifier("resnet50", 90, weights=None, input_shape=TINY),
    ],
    ids=["mobilenet_1024x90", "no_hidden_softmax", "conv_two_hidden", "resnet50_1024x90"],
)
def test_old_logits_and_slices_are_bit_exact(make):
    old = conv_or_random(make())
    new = tt.expand_classes(old, 2, new_class_names=["new_a", "new_b"])
    images = random_images(16)
    assert_bit_exact_old(old, new, images)
    old_kernel, old_bias = locate_classifier(old).kernel_and_bias()
    new_kernel, new_bias = locate_classifier(new).kernel_and_bias()
    assert new_kernel.shape == (old_kernel.shape[0], old_kernel.shape[1] + 2)
    np.testing.assert_array_equal(new_kernel[:, : old_kernel.shape[1]], old_kernel)
    np.testing.assert_array_equal(new_bias[: old_bias.shape[0]], old_bias)
    info = tt.class_info(new)
    assert info.class_names[-2:] == ("new_a", "new_b")
    assert info.history[-1]["operation"] == "expand_classes"
    assert info.history[-1]["old_classes"] == old_kernel.shape[1]


def conv_or_random(model):
    """Give the head non-trivial weights so that equality checks mean something."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            layer.set_weights(
                [w + np.random.default_rng(1).normal(0, 0.1, w.shape) for w in layer.get_weights()]
            )
    return model


def test_seed_scenario_1024x90_grows_to_1024x92_and_input_is_untouched():
    old = conv_or_random(tiny_classifier(90, hidden_units=(1024,)))
    before = [w.numpy().copy() for w in old.weights]
    new = tt.expand_classes(old, 2)
    assert new.get_layer("predictions").kernel.shape == (1024, 92)
    assert new.get_layer("predictions").bias.shape == (92,)
    assert tt.class_info(new).class_names[-2:] == ("class_90", "class_91")
    for b, w in zip(before, old.weights):
        np.testing.assert_array_equal(b, w.numpy())
    assert old.get_layer("predictions").kernel.shape == (1024, 90)
    # nothing is shared: training the new model leaves the old one alone
    assert not {id(w) for w in old.weights} & {id(w) for w in new.weights}
    # trainable flags and BatchNorm statistics carried over
    assert not new.get_layer("mobilenet_v3_small").trainable
    old_bn = old.get_layer("mobilenet_v3_small").get_layer("conv_bn")
    new_bn = new.get_layer("mobilenet_v3_small").get_layer("conv_bn")
    np.testing.assert_array_equal(old_bn.moving_mean.numpy(), new_bn.moving_mean.numpy())


def test_sequential_and_foreign_softmax_models_are_split_into_logits_and_activation():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(4, activation="softmax", name="scores"),
        ]
    )
    inputs = np.random.default_rng(0).normal(size=(10, 6)).astype("float32")
    new = tt.expand_classes(model, 3)
    assert new.get_layer("scores").activation is keras.activations.linear
    assert new.layers[-1].name == "probabilities"
    hidden = keras.Model(model.inputs, model.layers[0].output).predict(inputs, verbose=0)
    kernel, bias = [w.numpy() for w in model.layers[-1].weights]
    logits = keras.Model(new.inputs, new.get_layer("scores").output).predict(inputs, verbose=0)
    np.testing.assert_array_equal(logits[:, :4], hidden @ kernel + bias)
    np.testing.assert_allclose(new.predict(inputs, verbose=0).sum(axis=1), 1.0, rtol=1e-5)
    assert tt.class_info(new).activation == "softmax"


def test_models_loaded_from_keras_files_expand_and_save_safely(tmp_path):
    old = conv_or_random(tiny_classifier(5, class_names=list("abcde")))
    old.save(tmp_path / "old.keras")
    loaded = tt.load_model(tmp_path / "old.keras")
    new = tt.expand_classes(loaded, new_class_names=["f"], freeze_old=True)
    images = random_images(8)
    assert_bit_exact_old(loaded, new, images)
    new.save(tmp_path / "new.keras")
    again = tt.load_model(tmp_path / "new.keras")
    assert isinstance(again.get_layer("predictions"), ColumnBlockDense)
    assert tt.class_info(again).class_names == tuple("abcdef")
    np.testing.assert_array_equal(again.predict(images, verbose=0), new.predict(images, verbose=0))


def test_freeze_old_keeps_old_columns_through_training_and_merge_is_identical():
    old = conv_or_random(tiny_classifier(5, hidden_units=(16,)))
    new = tt.expand_classes(old, 2, freeze_old=True)
    layer = new.get_layer("predictions")
    assert layer.name == "predictions" and layer.block_units == [5, 2]
    old_kernel, old_bias = locate_classifier(old).kernel_and_bias()
    new.compile(
        keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    images, labels = random_images(32), np.arange(32) % 7
    new.fit(images, labels, epochs=3, batch_size=8, verbose=0)
    kernel, bias = locate_classifier(new).kernel_and_bias()
    np.testing.assert_array_equal(kernel[:, :5], old_kernel)
    np.testing.assert_array_equal(bias[:5], old_bias)
    assert not np.allclose(
        kernel[:, 5:],
        tt.expand_classes(old, 2, freeze_old=True).get_layer("predictions").kernels[1].numpy(),
    )

    merged = tt.merge_frozen(new)
    assert type(merged.get_layer("predictions")) is keras.layers.Dense
    assert merged.get_layer("predictions").kernel.shape == (16, 7)
    np.testing.assert_array_equal(merged.predict(images, verbose=0), new.predict(images, verbose=0))
    assert tt.class_info(merged) == tt.class_info(new)


def test_restore_old_classes_puts_the_original_slices_back_exactly():
    old = conv_or_random(tiny_classifier(5, hidden_units=(16,), class_names=list("abcde")))
    new = tt.expand_classes(old, new_class_names=["f", "g"])
    new.compile(
        keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    new.fit(random_images(16), np.arange(16) % 7, epochs=2, batch_size=8, verbose=0)
    kernel, _ = locate_classifier(new).kernel_and_bias()
    old_kernel, old_bias = locate_classifier(old).kernel_and_bias()
    assert not np.array_equal(kernel[:, :5], old_kernel)
    trained_new_columns = kernel[:, 5:].copy()
    assert tt.restore_old_classes(new, old) is new
    kernel, bias = locate_classifier(new).kernel_and_bias()
    np.testing.assert_array_equal(kernel[:, :5], old_kernel)
    np.testing.assert_array_equal(bias[:5], old_bias)
    np.testing.assert_array_equal(kernel[:, 5:], trained_new_columns)


def test_restore_rejects_mismatched_label_maps_and_shapes():
    old = tiny_classifier(3, class_names=["a", "b", "c"])
    other = tt.expand_classes(
        tiny_classifier(3, class_names=["a", "x", "c"]), new_class_names=["d"]
    )
    with pytest.raises(ValueError, match="column 1 is 'x' .* but 'b'"):
        tt.restore_old_classes(other, old)
    wider = tiny_classifier(3, hidden_units=(8,), class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="cannot hold"):
        tt.restore_old_classes(tt.expand_classes(wider, 1), old)


@pytest.mark.parametrize(
    "init, check",
    [
        ("zeros", lambda new_cols, old_kernel: np.all(new_cols == 0)),
        (
            "mean",
            lambda new_cols, old_kernel: np.allclose(
                new_cols, old_kernel.mean(axis=1, keepdims=True)
            ),
        ),
        # Glorot limit of the grown 16 x 8 kernel: sqrt(6 / (16 + 8)) = 0.5
        ("glorot_uniform", lambda new_cols, old_kernel: 0 < np.abs(new_cols).max() <= 0.5),
    ],
)
def test_new_column_initialisers(init, check):
    old = conv_or_random(tiny_classifier(5, hidden_units=(16,)))
    new = tt.expand_classes(old, 3, init=init)
    kernel, _ = locate_classifier(new).kernel_and_bias()
    assert check(kernel[:, 5:], kernel[:, :5])


@pytest.mark.parametrize(
    "bias_init, expected",
    [("zeros", 0.0), (0.01, -np.log(0.99 / 0.01))],
)
def test_bias_initialisers(bias_init, expected):
    new = tt.expand_classes(tiny_classifier(3, hidden_units=(8,)), 2, bias_init=bias_init)
    _, bias = locate_classifier(new).kernel_and_bias()
    np.testing.assert_allclose(bias[3:], expected, rtol=1e-6)


def test_imprint_uses_the_normalised_mean_embedding_scaled_to_old_norms():
    old = conv_or_random(conv_classifier(4, hidden_units=(12,)))
    images = random_images(6)
    new = tt.expand_classes(old, new_class_names=["n"], init="imprint", examples={"n": images})
    embed = keras.Model(old.inputs, old.get_layer("predictions").input).predict(images, verbose=0)
    unit = embed / np.linalg.norm(embed, axis=1, keepdims=True)
    mean = unit.mean(axis=0)
    old_kernel, _ = locate_classifier(old).kernel_and_bias()
    expected = np.linalg.norm(old_kernel, axis=0).mean() * mean / np.linalg.norm(mean)
    kernel, _ = locate_classifier(new).kernel_and_bias()
    np.testing.assert_allclose(kernel[:, 4], expected, rtol=1e-5)


def test_bad_input_errors_name_the_culprit():
    model = tiny_classifier(3, hidden_units=(8,), class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="num_new_classes must be a positive integer; got 0"):
        tt.expand_classes(model, 0)
    with pytest.raises(ValueError, match="num_new_classes must be a positive integer; got -2"):
        tt.expand_classes(model, -2)
    with pytest.raises(ValueError, match="new_class_names is empty"):
        tt.expand_classes(model, new_class_names=[])
    with pytest.raises(ValueError, match="duplicates: \\['d'\\]"):
        tt.expand_classes(model, new_class_names=["d", "d"])
    with pytest.raises(ValueError, match="already in the model: \\['a'\\]"):
        tt.expand_classes(model, new_class_names=["a"])
    with pytest.raises(ValueError, match="num_new_classes=3 but 2 new_class_names"):
        tt.expand_classes(model, 3, new_class_names=["d", "e"])
    with pytest.raises(ValueError, match="no layer named 'logits'"):
        tt.expand_classes(model, 1, layer="logits")
    with pytest.raises(
        ValueError, match="'head_pool' .* is a GlobalAveragePooling2D, not a classification layer"
    ):
        tt.expand_classes(model, 1, layer="head_pool")
    with pytest.raises(ValueError, match="'head_dense_1' .* does not produce the model output"):
        tt.expand_classes(model, 1, layer="head_dense_1")
    with pytest.raises(ValueError, match='init="imprint" needs examples'):
        tt.expand_classes(model, 1, init="imprint")
    with pytest.raises(ValueError, match="missing: \\['d'\\], not new classes: \\['x'\\]"):
        tt.expand_classes(
            model, new_class_names=["d"], init="imprint", examples={"x": random_images(1)}
        )
    with pytest.raises(ValueError, match="Unknown bias_init 'ones'"):
        tt.expand_classes(model, 1, bias_init="ones")
    inputs = keras.Input((4, 4, 3))
    conv_only = keras.Model(inputs, keras.layers.Conv2D(3, 1, name="conv_out")(inputs))
    with pytest.raises(
        ValueError, match="no recognisable classification layer.*'conv_out' \\(Conv2D\\)"
    ):
        tt.expand_classes(conv_only, 1)


def test_imprinting_works_on_sequential_models():
    model = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.Dense(3, name="scores"),
        ]
    )
    examples = random_images(3, shape=(4, 4, 3))
    new = tt.expand_classes(model, new_class_names=["z"], init="imprint", examples={"z": examples})
    embedding = keras.Model(model.inputs, model.get_layer("hidden").output).predict(
        examples, verbose=0
    )
    mean = (embedding / np.linalg.norm(embedding, axis=1, keepdims=True)).mean(axis=0)
    old_kernel, _ = locate_classifier(model).kernel_and_bias()
    expected = np.linalg.norm(old_kernel, axis=0).mean() * mean / np.linalg.norm(mean)
    np.testing.assert_allclose(
        locate_classifier(new).kernel_and_bias()[0][:, 3], expected, rtol=1e-5
    )
