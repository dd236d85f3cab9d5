"""Registry of ImageNet backbones from `keras.applications`.

Each entry is a small record: constructor, the preprocessing embedded in the
model (so every backbone takes raw 0..255 RGB pixels), default and minimum input
size, the layers of its feature levels P2..P5 (strides 4, 8, 16, 32) and a
pattern for its block boundaries (used for gradual unfreezing).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
from keras.src.backend.common import global_state

from tfx_transfer.preprocessing import ImagePreprocessing
from tfx_transfer.weights import Weights, explain_download_failures, resolve_weights

FEATURE_LEVELS = ("P2", "P3", "P4", "P5")
_apps = keras.applications


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone.

    Args:
        name: str. Registry name, e.g. "resnet50".
        constructor: callable. The `keras.applications` constructor.
        preprocessing: str. An `ImagePreprocessing` mode ("none" when the
            application normalises its inputs itself).
        default_size: int. The input size the ImageNet weights were trained at.
        min_size: int. The smallest input height/width the network accepts.
        feature_layers: tuple of 4 str. Layers giving P2, P3, P4 and P5.
        features_aligned: bool. True when P(k) is exactly twice the size of
            P(k+1) for inputs that are multiples of 32 (FPN-style adds work);
            False for valid-padding networks (Inception, Xception).
        block_pattern: str. Regex matching the layers that end a block.
    """

    name: str
    constructor: Callable[..., keras.Model]
    preprocessing: str
    default_size: int
    min_size: int
    feature_layers: tuple[str, str, str, str]
    features_aligned: bool
    block_pattern: str

    @property
    def feature_layer_map(self) -> dict[str, str]:
        """{"P2": layer name, ..., "P5": layer name}."""
        return dict(zip(FEATURE_LEVELS, self.feature_layers))


_REGISTRY: dict[str, BackboneSpec] = {}

# Parameters of each backbone without its top (checked by the registry contract test).
PARAMETERS = {
    "vgg16": 14_714_688,
    "vgg19": 20_024_384,
    "resnet50": 23_587_712,
    "resnet101": 42_658_176,
    "resnet152": 58_370_944,
    "resnet50_v2": 23_564_800,
    "resnet101_v2": 42_626_560,
    "resnet152_v2": 58_331_648,
    "inception_v3": 21_802_784,
    "inception_resnet_v2": 54_336_736,
    "xception": 20_861_480,
    "mobilenet": 3_228_864,
    "mobilenet_v2": 2_257_984,
    "mobilenet_v3_small": 939_120,
    "mobilenet_v3_large": 2_996_352,
    "efficientnet_b0": 4_049_571,
    "efficientnet_b1": 6_575_239,
    "efficientnet_b2": 7_768_569,
    "efficientnet_b3": 10_783_535,
    "efficientnet_b4": 17_673_823,
    "efficientnet_b5": 28_513_527,
    "efficientnet_b6": 40_960_143,
    "efficientnet_b7": 64_097_687,
    "efficientnet_v2_b0": 5_919_312,
    "efficientnet_v2_b1": 6_931_124,
    "efficientnet_v2_b2": 8_769_374,
    "efficientnet_v2_b3": 12_930_622,
    "efficientnet_v2_s": 20_331_360,
    "convnext_tiny": 27_820_128,
    "densenet121": 7_037_504,
}


def _register(
    name,
    constructor,
    preprocessing,
    default_size,
    features,
    block_pattern,
    *,
    min_size=32,
    aligned=True,
) -> None:
    _REGISTRY[name] = BackboneSpec(
        name,
        constructor,
        preprocessing,
        default_size,
        min_size,
        tuple(features),
        aligned,
        block_pattern,
    )


_register(
    "vgg16",
    _apps.VGG16,
    "caffe",
    224,
    ("block3_conv3", "block4_conv3", "block5_conv3", "block5_pool"),
    r"block\d_pool$",
)
_register(
    "vgg19",
    _apps.VGG19,
    "caffe",
    224,
    ("block3_conv4", "block4_conv4", "block5_conv4", "block5_pool"),
    r"block\d_pool$",
)
for _name, _ctor, _p3, _p4 in (
    ("resnet50", _apps.ResNet50, "conv3_block4_out", "conv4_block6_out"),
    ("resnet101", _apps.ResNet101, "conv3_block4_out", "conv4_block23_out"),
    ("resnet152", _apps.ResNet152, "conv3_block8_out", "conv4_block36_out"),
):
    _register(
        _name, _ctor, "caffe", 224, ("conv2_block3_out", _p3, _p4, "conv5_block3_out"), r"_out$"
    )
for _name, _ctor, _p3, _p4 in (
    ("resnet50_v2", _apps.ResNet50V2, "conv3_block3_out", "conv4_block5_out"),
    ("resnet101_v2", _apps.ResNet101V2, "conv3_block3_out", "conv4_block22_out"),
    ("resnet152_v2", _apps.ResNet152V2, "conv3_block7_out", "conv4_block35_out"),
):
    _register(
        _name, _ctor, "tf", 224, ("conv2_block2_out", _p3, _p4, "post_relu"), r"(_out|post_relu)$"
    )
_register(
    "inception_v3",
    _apps.InceptionV3,
    "tf",
    299,
    ("activation_4", "mixed2", "mixed7", "mixed10"),
    r"mixed\d+$",
    min_size=75,
    aligned=False,
)
_register(
    "inception_resnet_v2",
    _apps.InceptionResNetV2,
    "tf",
    299,
    ("activation_4", "block35_10_ac", "block17_20_ac", "conv_7b_ac"),
    r"(mixed_\w+|block\d+_\d+_ac|conv_7b_ac)$",
    min_size=75,
    aligned=False,
)
_register(
    "xception",
    _apps.Xception,
    "tf",
    299,
    ("add", "add_1", "add_10", "block14_sepconv2_act"),
    r"(add(_\d+)?|block14_sepconv2_act)$",
    min_size=71,
    aligned=False,
)
_register(
    "mobilenet",
    _apps.MobileNet,
    "tf",
    224,
    ("conv_pw_3_relu", "conv_pw_5_relu", "conv_pw_11_relu", "conv_pw_13_relu"),
    r"conv_pw_\d+_relu$",
)
_register(
    "mobilenet_v2",
    _apps.MobileNetV2,
    "tf",
    224,
    ("block_2_add", "block_5_add", "block_12_add", "out_relu"),
    r"(project_BN|_add|out_relu)$",
)
_register(
    "mobilenet_v3_small",
    _apps.MobileNetV3Small,
    "none",
    224,
    ("expanded_conv_project_bn", "expanded_conv_2_add", "expanded_conv_7_add", "activation_17"),
    r"(project_bn|_add|activation_17)$",
)
_register(
    "mobilenet_v3_large",
    _apps.MobileNetV3Large,
    "none",
    224,
    ("expanded_conv_2_add", "expanded_conv_5_add", "expanded_conv_11_add", "activation_19"),
    r"(project_bn|_add|activation_19)$",
)
for _index, (_size, _p2, _p3, _p4) in enumerate(
    (
        (224, "block2b_add", "block3b_add", "block5c_add"),
        (240, "block2c_add", "block3c_add", "block5d_add"),
        (260, "block2c_add", "block3c_add", "block5d_add"),
        (300, "block2c_add", "block3c_add", "block5e_add"),
        (380, "block2d_add", "block3d_add", "block5f_add"),
        (456, "block2e_add", "block3e_add", "block5g_add"),
        (528, "block2f_add", "block3f_add", "block5h_add"),
        (600, "block2g_add", "block3g_add", "block5j_add"),
    )
):
    _register(
        f"efficientnet_b{_index}",
        getattr(_apps, f"EfficientNetB{_index}"),
        "none",
        _size,
        (_p2, _p3, _p4, "top_activation"),
        r"(project_bn|_add|top_activation)$",
    )
for _suffix, _size, _p2, _p3, _p4 in (
    ("b0", 224, "block2b_add", "block3b_add", "block5e_add"),
    ("b1", 240, "block2c_add", "block3c_add", "block5f_add"),
    ("b2", 260, "block2c_add", "block3c_add", "block5f_add"),
    ("b3", 300, "block2c_add", "block3c_add", "block5g_add"),
    ("s", 384, "block2d_add", "block3d_add", "block5i_add"),
):
    _register(
        f"efficientnet_v2_{_suffix}",
        getattr(_apps, f"EfficientNetV2{_suffix.upper()}"),
        "none",
        _size,
        (_p2, _p3, _p4, "top_activation"),
        r"(project_bn|_add|top_activation)$",
    )
_register(
    "convnext_tiny",
    _apps.ConvNeXtTiny,
    "none",
    224,
    (
        "convnext_tiny_stage_0_block_2_identity",
        "convnext_tiny_stage_1_block_2_identity",
        "convnext_tiny_stage_2_block_8_identity",
        "layer_normalization",
    ),
    r"(block_\d+_identity|layer_normalization)$",
)
_register(
    "densenet121",
    _apps.DenseNet121,
    "torch",
    224,
    ("pool2_conv", "pool3_conv", "pool4_conv", "relu"),
    r"(_concat|pool\d_pool|^relu)$",
)


def list_backbones() -> list[str]:
    """Names of the registered backbones.

    Example:

    >>> "resnet50" in tt.list_backbones()
    True
    """
    return list(_REGISTRY)


def get_backbone_spec(name: str) -> BackboneSpec:
    """The registry record of backbone `name` (an error lists the valid names)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"Unknown backbone {name!r}. Registered backbones: {', '.join(_REGISTRY)}."
        ) from None


def build_backbone(
    name: str,
    weights: Weights = "imagenet",
    input_shape: Sequence[int | None] | None = None,
) -> keras.Model:
    """Builds a headless ImageNet backbone that takes raw 0..255 RGB pixels.

    The model-specific preprocessing is a layer inside the returned model; its
    output is the last feature map (P5, stride 32).

    Args:
        name: str. A name from `tt.list_backbones()`.
        weights: "imagenet" (Keras' cached download), a path to a weights file
            (saved with `save_weights`, or a Keras `*_notop.h5` file), or None.
        input_shape: (height, width, 3). Defaults to the backbone's default
            size; each side must be at least the backbone's minimum size.

    Example:

    >>> backbone = tt.build_backbone("mobilenet_v3_small", weights=None, input_shape=(64, 64, 3))
    >>> backbone.output_shape
    (None, 2, 2, 576)
    """
    spec = get_backbone_spec(name)
    shape = _check_input_shape(spec, input_shape)
    resolved = resolve_weights(weights, owner=name)
    with (
        _fresh_layer_names(),
        explain_download_failures(name),
        _explain_weight_mismatch(name, resolved),
    ):
        inputs = keras.Input(shape, name="images")
        x = inputs
        if spec.preprocessing != "none":
            x = ImagePreprocessing(spec.preprocessing, name="preprocessing")(inputs)
        application = spec.constructor(
            include_top=False, weights=resolved, input_tensor=x, input_shape=shape
        )
        return keras.Model(inputs, application.output, name=name)


def feature_layer_names(name: str) -> dict[str, str]:
    """{"P2": ..., "P5": ...}: the layers of a registered backbone's feature levels."""
    return get_backbone_spec(name).feature_layer_map


def block_boundaries(backbone: keras.Model, name: str | None = None) -> list[str]:
    """Names of the layers that end each block of `backbone`, first to last.

    A boundary is a layer that every path from input to output goes through and
    whose name matches the registry's block pattern; the output layer always
    ends the last block. Unfreezing "the top k blocks" means training every
    layer after boundary `-(k + 1)`.

    Args:
        backbone: keras.Model. A model from `build_backbone`.
        name: str. Registry name; defaults to `backbone.name`.
    """
    spec = get_backbone_spec(name or backbone.name)
    pattern = re.compile(spec.block_pattern)
    boundaries = [n for n in _cut_points(backbone) if pattern.search(n)]
    output_layer = backbone.layers[-1].name
    if not boundaries or boundaries[-1] != output_layer:
        boundaries.append(output_layer)
    return boundaries


def freeze_batchnorm(model: keras.Model) -> None:
    """Makes every BatchNormalization layer in `model` (nested models included)
    non-trainable, which in Keras 3 also keeps it in inference mode."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        elif isinstance(layer, keras.Model):
            freeze_batchnorm(layer)


def _check_input_shape(spec: BackboneSpec, input_shape) -> tuple[int | None, ...]:
    if input_shape is None:
        return (spec.default_size, spec.default_size, 3)
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(
            f"input_shape for {spec.name!r} must be (height, width, 3) RGB; got {shape}."
        )
    too_small = [s for s in shape[:2] if s is not None and s < spec.min_size]
    if too_small:
        raise ValueError(
            f"input_shape {shape} is too small for {spec.name!r}: height and width must be "
            f"at least {spec.min_size} pixels (default size {spec.default_size})."
        )
    return shape


@contextlib.contextmanager
def _fresh_layer_names() -> Iterator[None]:
    """Keras numbers auto-named layers per session ("activation_4"); build every
    backbone from a fresh counter so its layer names are the registry's."""
    saved = global_state.get_global_attribute("object_name_uids")
    global_state.set_global_attribute("object_name_uids", collections.defaultdict(int))
    try:
        yield
    finally:
        global_state.set_global_attribute("object_name_uids", saved)


@contextlib.contextmanager
def _explain_weight_mismatch(name: str, weights: str | None) -> Iterator[None]:
    try:
        yield
    except ValueError as error:
        if weights in (None, "imagenet"):
            raise
        raise ValueError(
            f"Weights file {weights!r} does not fit backbone {name!r} as built here: {error}"
        ) from error


def _cut_points(model: keras.Model) -> list[str]:
    """Layers (in order) through which every path from input to output passes."""
    consumers: dict[str, set[str]] = collections.defaultdict(set)
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for parent in node.parent_nodes:
                consumers[parent.operation.name].add(layer.name)
    computed: set[str] = set()
    live: set[str] = set()
    cuts = []
    for layer in model.layers:
        computed.add(layer.name)
        live = {n for n in live if not consumers[n] <= computed} | {layer.name}
        if live == {layer.name}:
            cuts.append(layer.name)
    return cuts


def describe(spec: BackboneSpec) -> dict[str, Any]:
    """A printable summary of one registry entry."""
    return {
        "name": spec.name,
        "default_size": spec.default_size,
        "min_size": spec.min_size,
        "preprocessing": spec.preprocessing,
        "features_aligned": spec.features_aligned,
        "parameters": PARAMETERS[spec.name],
        **spec.feature_layer_map,
    }
