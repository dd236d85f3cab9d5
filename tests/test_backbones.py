import urllib.error

import numpy as np
import pytest
from keras.src.applications import resnet
from keras.src.backend import config as keras_config
from keras.src.utils import file_utils

import tfx_transfer as tt
from tfx_transfer.backbones import FEATURE_LEVELS, describe

REQUIRED = [
    "vgg16",
    "vgg19",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnet50_v2",
    "resnet101_v2",
    "resnet152_v2",
    "inception_v3",
    "inception_resnet_v2",
    "xception",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    *[f"efficientnet_b{i}" for i in range(8)],
    "efficientnet_v2_b0",
    "efficientnet_v2_b1",
    "efficientnet_v2_b2",
    "efficientnet_v2_b3",
    "efficientnet_v2_s",
    "convnext_tiny",
    "densenet121",
]


def test_registry_lists_every_required_backbone():
    assert set(REQUIRED) <= set(tt.list_backbones())


@pytest.mark.slow
@pytest.mark.parametrize("name", tt.list_backbones())
def test_registry_contract(name):
    """Every entry builds at its minimum size, takes raw pixels, and its feature
    levels and block boundaries exist with the expected strides."""
    spec = tt.get_backbone_spec(name)
    size = spec.min_size
    backbone = tt.build_backbone(name, weights=None, input_shape=(size, size, 3))
    assert backbone.name == name
    assert backbone.input_shape == (None, size, size, 3)
    assert backbone.count_params() == describe(spec)["parameters"]

    sizes = []
    for level, layer_name in zip(FEATURE_LEVELS, spec.feature_layers):
        height, width = backbone.get_layer(layer_name).output.shape[1:3]
        stride = 2 ** int(level[1])
        assert height == width
        if spec.features_aligned:
            assert height == -(-size // stride), (level, layer_name, height)
        else:
            assert 1 <= height <= -(-size // stride), (level, layer_name, height)
        sizes.append(height)
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes[:3])) == 3
    assert spec.feature_layers[-1] == backbone.layers[-1].name

    boundaries = tt.block_boundaries(backbone)
    positions = [backbone.layers.index(backbone.get_layer(b)) for b in boundaries]
    assert len(boundaries) >= 4
    assert positions == sorted(positions)
    assert boundaries[-1] == backbone.layers[-1].name

    features = backbone.predict(np.full((1, size, size, 3), 128.0, "float32"), verbose=0)
    assert np.isfinite(features).all()


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match="Unknown backbone 'resnet5'.*resnet50.*densenet121"):
        tt.build_backbone("resnet5", weights=None)


def test_too_small_input_names_the_minimum():
    with pytest.raises(ValueError, match="too small for 'inception_v3'.*at least 75 pixels"):
        tt.build_backbone("inception_v3", weights=None, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match=r"\(height, width, 3\)"):
        tt.build_backbone("resnet50", weights=None, input_shape=(64, 64, 1))


def test_default_input_size_comes_from_the_registry():
    backbone = tt.build_backbone("mobilenet_v3_small", weights=None)
    assert backbone.input_shape == (None, 224, 224, 3)


def test_weights_round_trip_through_a_local_file(tmp_path):
    original = tt.build_backbone("mobilenet_v3_small", weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "backbone.weights.h5"
    original.save_weights(path)
    loaded = tt.build_backbone("mobilenet_v3_small", weights=path, input_shape=(32, 32, 3))
    fresh = tt.build_backbone("mobilenet_v3_small", weights=None, input_shape=(32, 32, 3))
    for a, b in zip(original.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert any(
        not np.array_equal(a.numpy(), c.numpy()) for a, c in zip(original.weights, fresh.weights)
    )


@pytest.mark.filterwarnings("ignore:Skipping")
def test_weights_file_for_another_backbone_is_a_clear_error(tmp_path):
    path = tmp_path / "other.weights.h5"
    tt.build_backbone("mobilenet_v3_small", weights=None, input_shape=(32, 32, 3)).save_weights(
        path
    )
    with pytest.raises(ValueError, match="does not fit backbone 'mobilenet_v2'"):
        tt.build_backbone("mobilenet_v2", weights=path, input_shape=(32, 32, 3))


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.weights.h5"):
        tt.build_backbone("resnet50", weights=tmp_path / "nowhere.weights.h5")


def test_offline_imagenet_names_file_cache_path_and_hash(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
    with pytest.raises(tt.WeightsUnavailableError) as caught:
        tt.build_backbone("resnet50", weights="imagenet", input_shape=(32, 32, 3))
    message = str(caught.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert (
        str(tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5") in message
    )
    assert resnet.WEIGHTS_HASHES["resnet50"][1] in message  # the hash Keras checks
    assert "weights='<path to a weights file>'" in message
    assert file_utils.get_file.__name__ == "get_file"  # the download hook was removed
