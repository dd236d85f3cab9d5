"""Registry backbones as KerasCV backbones: the same model, with its P3..P5 layers named.

KerasCV detectors take a `keras_cv.models.Backbone` whose `pyramid_level_inputs`
maps "P3", "P4", "P5" to layer names. `PyramidBackbone` wraps a functional model
from `tt.build_backbone` (raw 0..255 pixels in, preprocessing inside) that way,
and, unlike a bare `keras_cv.models.Backbone(inputs, outputs)`, it survives
`model.save()` and `tt.load_model()`: its config is the functional graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import keras_cv

from tfx_transfer.backbones.build import build_backbone
from tfx_transfer.backbones.registry import get_backbone_spec, list_backbones
from tfx_transfer.core.weights import Weights

DETECTION_LEVELS = ("P3", "P4", "P5")
STRIDE = 32  # P5's stride: detector inputs must be multiples of it


@keras.saving.register_keras_serializable(package="tfx_transfer")
class PyramidBackbone(keras_cv.models.Backbone):
    """A functional backbone model exposing its feature levels to KerasCV detectors.

    Args:
        inputs: the model's input tensor(s), as for `keras.Model(inputs, outputs)`.
        outputs: the model's output tensor(s).
        pyramid_level_inputs: dict. {"P3": layer name, "P4": ..., "P5": ...}.
        name: str. Model name (a registry name for registry backbones).

    Example:

    >>> backbone = PyramidBackbone.from_registry("mobilenet_v3_small", weights=None,
    ...                                          input_shape=(128, 128, 3))
    >>> backbone.pyramid_level_inputs["P3"]
    'expanded_conv_2_add'
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):
        levels = dict(kwargs.pop("pyramid_level_inputs"))
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        missing = [level for level in DETECTION_LEVELS if level not in levels]
        if missing:
            raise ValueError(
                f"pyramid_level_inputs of backbone {self.name!r} lacks levels {missing}; "
                f"detectors need {list(DETECTION_LEVELS)}."
            )
        for layer_name in levels.values():
            self.get_layer(layer_name)  # a clear error for a wrong layer name
        self.pyramid_level_inputs = levels

    @classmethod
    def from_registry(
        cls,
        name: str,
        *,
        weights: Weights = "imagenet",
        input_shape: Sequence[int | None] | None = None,
        levels: Sequence[str] = DETECTION_LEVELS,
    ) -> PyramidBackbone:
        """Builds registry backbone `name` (`tt.build_backbone`) as a detector backbone.

        Example:

        >>> PyramidBackbone.from_registry("resnet50", weights=None).pyramid_level_inputs["P5"]
        'conv5_block3_out'

        Raises:
            ValueError: when the backbone's feature levels do not align (valid
                padding), naming the backbones that work.
        """
        check_aligned(name)
        model = build_backbone(name, weights=weights, input_shape=input_shape)
        return cls.wrap(model, name, levels=levels)

    @classmethod
    def wrap(
        cls,
        model: keras.Model,
        name: str | None = None,
        *,
        levels: Sequence[str] = DETECTION_LEVELS,
    ) -> PyramidBackbone:
        """Wraps a model from `tt.build_backbone` (same layers, shared weights), naming
        its feature `levels` (P3..P5 for detectors; segmenters add P2).

        Example:

        >>> PyramidBackbone.wrap(tt.build_backbone("resnet50", weights=None)).name
        'resnet50'
        """
        name = name or model.name
        check_aligned(name)
        spec = get_backbone_spec(name)
        named = {level: spec.feature_layer_map[level] for level in levels}
        return cls(model.inputs, model.outputs, name=name, pyramid_level_inputs=named)

    def get_config(self) -> dict[str, Any]:
        # keras_cv's Backbone keeps only name/trainable; ours is the functional graph.
        config = super(keras_cv.models.Backbone, self).get_config()
        config["pyramid_level_inputs"] = dict(self.pyramid_level_inputs)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any], custom_objects=None) -> PyramidBackbone:
        return super(keras_cv.models.Backbone, cls).from_config(
            dict(config), custom_objects=custom_objects
        )


def aligned_backbones() -> list[str]:
    """Registry backbones whose P3..P5 align (usable by detectors).

    Example:

    >>> "resnet50" in aligned_backbones()
    True
    """
    return [name for name in list_backbones() if get_backbone_spec(name).features_aligned]


def check_aligned(name: str, task: str = "detector") -> None:
    """Raises a ValueError naming `name` and the usable backbones if its levels don't align.

    Example:

    >>> check_aligned("xception")
    Traceback (most recent call last):
    ValueError: Backbone 'xception' cannot be used by a detector: ...
    """
    spec = get_backbone_spec(name)
    if not spec.features_aligned:
        raise ValueError(
            f"Backbone {name!r} cannot be used by a {task}: its feature levels do not align "
            f"(valid padding: P4 is not half of P3), so a feature pyramid cannot join them. "
            f"Use one of: {', '.join(aligned_backbones())}."
        )


def resolve_pyramid_backbone(
    backbone: Any,
    weights: Weights,
    input_shape: Sequence[int | None] | None,
    *,
    levels: Sequence[str],
    default_size: int,
    task: str,
) -> keras_cv.models.Backbone:
    """The backbone of a detector or segmenter, exposing feature `levels` ("P2".."P5").

    Takes a registry name (built here), a model from `tt.build_backbone` (wrapped)
    or a `keras_cv.models.Backbone` that has those levels.

    Example:

    >>> resolve_pyramid_backbone("resnet50", None, (256, 256, 3), levels=("P3", "P4", "P5"),
    ...                          default_size=512, task="detector").pyramid_level_inputs["P3"]
    'conv3_block4_out'
    """
    if isinstance(backbone, str):
        if backbone in list_backbones():
            check_aligned(backbone, task)
        shape = check_detector_input_shape(input_shape, default_size)
        return PyramidBackbone.from_registry(
            backbone, weights=weights, input_shape=shape, levels=tuple(levels)
        )
    if isinstance(backbone, keras_cv.models.Backbone):
        present = getattr(backbone, "pyramid_level_inputs", None) or {}
        missing = [level for level in levels if level not in present]
        if missing:
            raise ValueError(
                f"KerasCV backbone {backbone.name!r} has no pyramid levels {missing} "
                f"(pyramid_level_inputs: {dict(present)}); a {task} needs {list(levels)}."
            )
        _check_same_shape(backbone, input_shape)
        return backbone
    if isinstance(backbone, keras.Model) and backbone.name in list_backbones():
        _check_same_shape(backbone, input_shape)
        check_detector_input_shape(backbone.input_shape[1:], default_size)
        return PyramidBackbone.wrap(backbone, levels=tuple(levels))
    raise TypeError(
        f"backbone must be a registry name ({', '.join(aligned_backbones())}), a model from "
        f"tt.build_backbone, or a keras_cv.models.Backbone; got {type(backbone).__name__} "
        f"{getattr(backbone, 'name', '')!r}."
    )


def _check_same_shape(backbone: keras.Model, input_shape) -> None:
    if input_shape is not None and tuple(input_shape) != tuple(backbone.input_shape[1:]):
        raise ValueError(
            f"input_shape {tuple(input_shape)} disagrees with backbone {backbone.name!r}'s "
            f"input shape {backbone.input_shape[1:]}; build the backbone at that size."
        )


def check_detector_input_shape(
    input_shape: Sequence[int | None] | None, default_size: int
) -> tuple[int | None, int | None, int]:
    """(height, width, 3) with both sides multiples of 32 (or None); defaults to default_size.

    Example:

    >>> check_detector_input_shape(None, 512)
    (512, 512, 3)
    """
    if input_shape is None:
        return (default_size, default_size, 3)
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3) RGB; got {shape}.")
    bad = [side for side in shape[:2] if side is not None and side % STRIDE]
    if bad:
        raise ValueError(
            f"Detector input_shape {shape}: height and width must be multiples of {STRIDE} "
            f"(the stride of P5) so that the feature pyramid levels align; got {bad}."
        )
    return shape
