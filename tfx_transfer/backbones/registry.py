"""Registry of ImageNet backbones from `keras.applications`.

Each entry is a keyword record (`BackboneSpec`): the `keras.applications`
constructor's name, the preprocessing embedded in the model (so every backbone
takes raw 0..255 RGB pixels), default and minimum input size, the layers of its
feature levels P2..P5 (strides 4, 8, 16, 32), a pattern for its block
boundaries (used for gradual unfreezing) and its parameter count without the
top. Reading the registry imports neither Keras nor TensorFlow (`tfx-transfer
backbones` answers at once); `backbones.build` builds from it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

FEATURE_LEVELS = ("P2", "P3", "P4", "P5")


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone.

    Args:
        name: str. Registry name, e.g. "resnet50".
        constructor: str. The name of the `keras.applications` constructor, e.g. "ResNet50".
        preprocessing: str. An `ImagePreprocessing` mode ("none" when the
            application normalises its inputs itself).
        default_size: int. The input size the ImageNet weights were trained at.
        min_size: int. The smallest input height/width the network accepts.
        feature_layers: tuple of 4 str. Layers giving P2, P3, P4 and P5.
        features_aligned: bool. True when P(k) is exactly twice the size of
            P(k+1) for inputs that are multiples of 32 (FPN-style adds work);
            False for valid-padding networks (Inception, Xception).
        block_pattern: str. Regex matching the layers that end a block.
        parameters: int. Parameters without the top (checked by the registry contract test).

    Example:

    >>> tt.get_backbone_spec("resnet50").feature_layer_map["P3"]
    'conv3_block4_out'
    """

    name: str
    constructor: str
    preprocessing: str
    default_size: int
    min_size: int
    feature_layers: tuple[str, str, str, str]
    features_aligned: bool
    block_pattern: str
    parameters: int

    @property
    def feature_layer_map(self) -> dict[str, str]:
        """{"P2": layer name, ..., "P5": layer name}."""
        return dict(zip(FEATURE_LEVELS, self.feature_layers))


_REGISTRY: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="vgg16",
            constructor="VGG16",
            preprocessing="caffe",
            default_size=224,
            min_size=32,
            feature_layers=("block3_conv3", "block4_conv3", "block5_conv3", "block5_pool"),
            features_aligned=True,
            block_pattern=r"block\d_pool$",
            parameters=14_714_688,
        ),
        BackboneSpec(
            name="vgg19",
            constructor="VGG19",
            preprocessing="caffe",
            default_size=224,
            min_size=32,
            feature_layers=("block3_conv4", "block4_conv4", "block5_conv4", "block5_pool"),
            features_aligned=True,
            block_pattern=r"block\d_pool$",
            parameters=20_024_384,
        ),
        BackboneSpec(
            name="resnet50",
            constructor="ResNet50",
            preprocessing="caffe",
            default_size=224,
            min_size=32,
            feature_layers=(
                "conv2_block3_out",
                "conv3_block4_out",
                "conv4_block6_out",
                "conv5_block3_out",
            ),
            features_aligned=True,
            block_pattern=r"_out$",
            parameters=23_587_712,
        ),
        BackboneSpec(
            name="resnet101",
            constructor="ResNet101",
            preprocessing="caffe",
            default_size=224,
            min_size=32,
            feature_layers=(
                "conv2_block3_out",
                "conv3_block4_out",
                "conv4_block23_out",
                "conv5_block3_out",
            ),
            features_aligned=True,
            block_pattern=r"_out$",
            parameters=42_658_176,
        ),
        BackboneSpec(
            name="resnet152",
            constructor="ResNet152",
            preprocessing="caffe",
            default_size=224,
            min_size=32,
            feature_layers=(
                "conv2_block3_out",
                "conv3_block8_out",
                "conv4_block36_out",
                "conv5_block3_out",
            ),
            features_aligned=True,
            block_pattern=r"_out$",
            parameters=58_370_944,
        ),
        BackboneSpec(
            name="resnet50_v2",
            constructor="ResNet50V2",
            preprocessing="tf",
            default_size=224,
            min_size=32,
            feature_layers=(
                "conv2_block2_out",
                "conv3_block3_out",
                "conv4_block5_out",
                "post_relu",
            ),
            features_aligned=True,
            block_pattern=r"(_out|post_relu)$",
            parameters=23_564_800,
        ),
        BackboneSpec(
            name="resnet101_v2",
            constructor="ResNet101V2",
            preprocessing="tf",
            default_size=224,
            min_size=32,
            feature_layers=(
                "conv2_block2_out",
                "conv3_block3_out",
                "conv4_block22_out",
                "post_relu",
            ),
            features_aligned=True,
            block_pattern=r"(_out|post_relu)$",
            parameters=42_626_560,
        ),
        BackboneSpec(
            name="resnet152_v2",
            constructor="ResNet152V2",
            preprocessing="tf",
            default_size=224,
            min_size=32,
            feature_layers=(
                "conv2_block2_out",
                "conv3_block7_out",
                "conv4_block35_out",
                "post_relu",
            ),
            features_aligned=True,
            block_pattern=r"(_out|post_relu)$",
            parameters=58_331_648,
        ),
        BackboneSpec(
            name="inception_v3",
            constructor="InceptionV3",
            preprocessing="tf",
            default_size=299,
            min_size=75,
            feature_layers=("activation_4", "mixed2", "mixed7", "mixed10"),
            features_aligned=False,
            block_pattern=r"mixed\d+$",
            parameters=21_802_784,
        ),
        BackboneSpec(
            name="inception_resnet_v2",
            constructor="InceptionResNetV2",
            preprocessing="tf",
            default_size=299,
            min_size=75,
            feature_layers=("activation_4", "block35_10_ac", "block17_20_ac", "conv_7b_ac"),
            features_aligned=False,
            block_pattern=r"(mixed_\w+|block\d+_\d+_ac|conv_7b_ac)$",
            parameters=54_336_736,
        ),
        BackboneSpec(
            name="xception",
            constructor="Xception",
            preprocessing="tf",
            default_size=299,
            min_size=71,
            feature_layers=("add", "add_1", "add_10", "block14_sepconv2_act"),
            features_aligned=False,
            block_pattern=r"(add(_\d+)?|block14_sepconv2_act)$",
            parameters=20_861_480,
        ),
        BackboneSpec(
            name="mobilenet",
            constructor="MobileNet",
            preprocessing="tf",
            default_size=224,
            min_size=32,
            feature_layers=(
                "conv_pw_3_relu",
                "conv_pw_5_relu",
                "conv_pw_11_relu",
                "conv_pw_13_relu",
            ),
            features_aligned=True,
            block_pattern=r"conv_pw_\d+_relu$",
            parameters=3_228_864,
        ),
        BackboneSpec(
            name="mobilenet_v2",
            constructor="MobileNetV2",
            preprocessing="tf",
            default_size=224,
            min_size=32,
            feature_layers=("block_2_add", "block_5_add", "block_12_add", "out_relu"),
            features_aligned=True,
            block_pattern=r"(project_BN|_add|out_relu)$",
            parameters=2_257_984,
        ),
        BackboneSpec(
            name="mobilenet_v3_small",
            constructor="MobileNetV3Small",
            preprocessing="none",
            default_size=224,
            min_size=32,
            feature_layers=(
                "expanded_conv_project_bn",
                "expanded_conv_2_add",
                "expanded_conv_7_add",
                "activation_17",
            ),
            features_aligned=True,
            block_pattern=r"(project_bn|_add|activation_17)$",
            parameters=939_120,
        ),
        BackboneSpec(
            name="mobilenet_v3_large",
            constructor="MobileNetV3Large",
            preprocessing="none",
            default_size=224,
            min_size=32,
            feature_layers=(
                "expanded_conv_2_add",
                "expanded_conv_5_add",
                "expanded_conv_11_add",
                "activation_19",
            ),
            features_aligned=True,
            block_pattern=r"(project_bn|_add|activation_19)$",
            parameters=2_996_352,
        ),
        BackboneSpec(
            name="efficientnet_b0",
            constructor="EfficientNetB0",
            preprocessing="none",
            default_size=224,
            min_size=32,
            feature_layers=("block2b_add", "block3b_add", "block5c_add", "top_activation"),
            features_aligned=True,
            block_pattern=r"(project_bn|_add|top_activation)$",
            parameters=4_049_571,
        ),
        BackboneSpec(
            name="efficientnet_b1",
            constructor="EfficientNetB1",
            preprocessing="none",
            default_size=240,
            min_size=32,
            feature_layers=("block2c_add", "block3c_add", "block5d_add", "top_activation"),
            features_aligned=True,
            block_pattern=r"(project_bn|_add|top_activation)$",
            parameters=6_575_239,
        ),
        BackboneSpec(
            name="efficientnet_b2",
            constructor="EfficientNetB2",
            preprocessing="none",
            default_size=260,
            min_size=32,
            feature_layers=("block2c_add", "block3c_add", "block5d_add", "top_activation"),
            features_aligned=True,
            block_pattern=r"(project_bn|_add|top_activation)$",
            parameters=7_768_569,
        ),
        BackboneSpec(
            name="efficientnet_b3",
            constructor="EfficientNetB3",
            preprocessing="none",
            default_size=300,
            min_size=32,
            feature_layers=("block2c_add", "block3c_add", "block5e_add", "top_activation"),
            features_aligned=True,
            block_pattern=r"(project_bn|_add|top_activation)$",
            parameters=10_783_535,
        ),
        BackboneSpec(
            name="efficientnet_b4",
            constructor="EfficientNetB4",
            preprocessing="none",
            default_size=380,
            min_size=32,
            feature_layers=("block2d_add", "block3d_add", "block5f_add", "top_activation"),
            features_aligned=True,
            block_pattern=r"(project_bn|_add|top_activation)$",
            parameters=17_673_823,
        ),
        BackboneSpec(
            name="efficientnet_b5",
            constructor="EfficientNetB5",
            preprocessing="none",
            default_size=456,
            min_size=32,
            feature_layers=("block2e_add", "block3e_add", "block5g_add", "top_activation"),
            features_aligned=True,
            block_pattern=r"(project_bn|_add|top_activation)$",
            parameters=28_513_527,
        ),
        BackboneSpec(
            name="efficientnet_b6",
            constructor="EfficientNetB6",
            preprocessing="none",
            default_size=528,
            min_size=32,
            feature_layers=("block2f_add", "block3f_add", "block5h_add", "top_activation"),
            features_aligned=True,
            block_pattern=r"(project_bn|_add|top_activation)$",
            parameters=40_960_143,
        ),
        BackboneSpec(
            name="efficientnet_b7",
            constructor="EfficientNetB7",
            preprocessing="none",
            default_size=600,
            min_size=32,
            feature_layers=("block2g_add", "block3g_add", "block5j_add", "top_activation"),
            features_aligned=True,
            block_pattern=r"(project_bn|_add|top_activation)$",
            parameters=64_097_687,
        ),
        BackboneSpec(
            name="efficientnet_v2_b0",
            constructor="EfficientNetV2B0",
            preprocessing="none",
            default_size=224,
            min_size=32,
            feature_layers=("block2b_add", "block3b_add", "block5e_add", "top_activation"),
            features_aligned=True,
            block_pattern=r"(project_bn|_add|top_activation)$",
            parameters=5_919_312,
        ),
        BackboneSpec(
            name="efficientnet_v2_b1",
            constructor="EfficientNetV2B1",
            preprocessing="none",
            default_size=240,
            min_size=32,
            feature_layers=("block2c_add", "block3c_add", "block5f_add", "top_activation"),
            features_aligned=True,
            block_pattern=r"(project_bn|_add|top_activation)$",
            parameters=6_931_124,
        ),
        BackboneSpec(
            name="efficientnet_v2_b2",
            constructor="EfficientNetV2B2",
            preprocessing="none",
            default_size=260,
            min_size=32,
            feature_layers=("block2c_add", "block3c_add", "block5f_add", "top_activation"),
            features_aligned=True,
            block_pattern=r"(project_bn|_add|top_activation)$",
            parameters=8_769_374,
        ),
        BackboneSpec(
            name="efficientnet_v2_b3",
            constructor="EfficientNetV2B3",
            preprocessing="none",
            default_size=300,
            min_size=32,
            feature_layers=("block2c_add", "block3c_add", "block5g_add", "top_activation"),
            features_aligned=True,
            block_pattern=r"(project_bn|_add|top_activation)$",
            parameters=12_930_622,
        ),
        BackboneSpec(
            name="efficientnet_v2_s",
            constructor="EfficientNetV2S",
            preprocessing="none",
            default_size=384,
            min_size=32,
            feature_layers=("block2d_add", "block3d_add", "block5i_add", "top_activation"),
            features_aligned=True,
            block_pattern=r"(project_bn|_add|top_activation)$",
            parameters=20_331_360,
        ),
        BackboneSpec(
            name="convnext_tiny",
            constructor="ConvNeXtTiny",
            preprocessing="none",
            default_size=224,
            min_size=32,
            feature_layers=(
                "convnext_tiny_stage_0_block_2_identity",
                "convnext_tiny_stage_1_block_2_identity",
                "convnext_tiny_stage_2_block_8_identity",
                "layer_normalization",
            ),
            features_aligned=True,
            block_pattern=r"(block_\d+_identity|layer_normalization)$",
            parameters=27_820_128,
        ),
        BackboneSpec(
            name="densenet121",
            constructor="DenseNet121",
            preprocessing="torch",
            default_size=224,
            min_size=32,
            feature_layers=("pool2_conv", "pool3_conv", "pool4_conv", "relu"),
            features_aligned=True,
            block_pattern=r"(_concat|pool\d_pool|^relu)$",
            parameters=7_037_504,
        ),
    )
}


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


def feature_layer_names(name: str) -> dict[str, str]:
    """{"P2": ..., "P5": ...}: the layers of a registered backbone's feature levels."""
    return get_backbone_spec(name).feature_layer_map


def describe(spec: BackboneSpec) -> dict[str, Any]:
    """A printable summary of one registry entry."""
    return {
        "name": spec.name,
        "default_size": spec.default_size,
        "min_size": spec.min_size,
        "preprocessing": spec.preprocessing,
        "features_aligned": spec.features_aligned,
        "parameters": spec.parameters,
        **spec.feature_layer_map,
    }
