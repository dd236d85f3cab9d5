import keras
import numpy as np
import pytest
from helpers import TINY, random_images

import tfx_transfer as tt
from tfx_transfer.training.unfreeze import set_trainable


@pytest.fixture
def model():
    return tt.build_classifier("resnet50", 3, weights=None, input_shape=TINY, hidden_units=(8,))


def trainable_layers(model):
    return {w.path.split("/")[0] for w in model.trainable_weights}


def test_head_only(model):
    assert set_trainable(model, "head") == []
    assert trainable_layers(model) == {"head_dense_1", "predictions"}


def test_top_blocks_follow_the_registry_boundaries_and_keep_batchnorm_frozen(model):
    unfrozen = set_trainable(model, "top_blocks", top_blocks=1)
    backbone = model.get_layer("resnet50")
    assert unfrozen and all(name.startswith("conv5_block3") for name in unfrozen)
    assert not any(
        isinstance(backbone.get_layer(n), keras.layers.BatchNormalization) for n in unfrozen
    )
    two = set_trainable(model, "top_blocks", top_blocks=2)
    assert {n.split("_")[1] for n in two} == {"block2", "block3"} and len(two) > len(unfrozen)
    # BatchNorm statistics do not move while training the top blocks
    bn = backbone.get_layer("conv5_block3_3_bn")
    before = bn.moving_mean.numpy().copy()
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(random_images(8), np.arange(8) % 3, epochs=1, batch_size=4, verbose=0)
    np.testing.assert_array_equal(before, bn.moving_mean.numpy())


def test_all_and_classifier_only(model):
    everything = set_trainable(model, "all")
    assert "conv1_conv" in everything
    set_trainable(model, "all", train_batchnorm=True)
    assert model.get_layer("resnet50").get_layer("conv1_bn").trainable
    set_trainable(model, "classifier")
    assert trainable_layers(model) == {"predictions"}


def test_bad_arguments_are_named(model):
    with pytest.raises(ValueError, match="Unknown part 'body'"):
        set_trainable(model, "body")
    with pytest.raises(ValueError, match="top_blocks must be between 1 and 15 for 'resnet50'"):
        set_trainable(model, "top_blocks", top_blocks=0)
