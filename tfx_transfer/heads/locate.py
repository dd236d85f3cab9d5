"""The one place that knows where a model keeps its classifier and how its
columns are laid out. Every class operation goes through `locate_classifier`.

Classifiers built here end in a `Dense` (or `ColumnBlockDense`) named
`predictions` whose output columns are the classes, in order ("plain" layout),
optionally followed by an activation layer. Models from elsewhere are
recognised when a Dense layer produces the model output, directly or through
`Activation`/`Softmax` layers.

Detectors (KerasCV's, usually built by `tt.build_detector`):

- RetinaNet ("anchor_major"): one classification head shared by P3..P7 ending
  in a 3x3 conv `classification_head.prediction_layer` with anchors x classes
  output channels, channel = anchor * num_classes + class (9 anchors). Logits.
- RetinaNet with class branches ("anchor_major_branched", from
  `expand_classes(..., separate_branch=True)`): a `BranchedClassificationHead`
  whose branches each end in a class conv for their classes; the head's output
  is anchor-major over all classes.
- YOLOv8 ("per_level"): one 1x1 conv per pyramid level,
  `yolo_v8_head_{1,2,3}_class_3_conv`, channel = class; a sigmoid follows.

- Faster R-CNN ("two_stage", `tt.build_detector("faster_rcnn", ...)`): the
  Dense `box_classifier` (features -> classes + 1: column 0 background, class
  k in column k + 1; logits, a softmax follows) and the Dense `box_regressor`
  (features -> 4 x classes, class-major: class k's deltas in columns 4k..4k+3).

Segmenters (KerasCV DeepLabV3+ built by `tt.build_segmenter`, "per_pixel"):
the 1x1 conv `segmentation_logits` inside `segmentation_head`, channel =
class, followed by a softmax.

Classifiers with class branches ("branched": `expand_classes(...,
separate_branch=True)`, `tt.merge_heads`) concatenate the logits of several
Dense layers in a `Concatenate` layer named `class_logits`; the columns are
the branches' columns in order.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

import keras
import numpy as np

from tfx_transfer.core.graph import input_layers, producer
from tfx_transfer.heads.column_blocks import ColumnBlockDense

PREDICTIONS = "predictions"  # the name of a classifier's class layer
CLASSIFIER_LAYERS = (keras.layers.Dense, ColumnBlockDense)
ACTIVATION_LAYERS = (keras.layers.Activation, keras.layers.Softmax)
PLAIN, ANCHOR_MAJOR, PER_LEVEL, BRANCHED = "plain", "anchor_major", "per_level", "branched"
ANCHOR_BRANCHED = "anchor_major_branched"
PER_PIXEL = "per_pixel"
TWO_STAGE = "two_stage"
SEGMENTATION_LOGITS = "segmentation_logits"
RETINANET_BRANCH_LAYER = "classification_head.branches.{index}.prediction_layer"
RETINANET_CLASS_LAYER = "classification_head.prediction_layer"
YOLOV8_CLASS_LAYER = "yolo_v8_head_{level}_class_3_conv"
FASTER_RCNN_CLASSIFIER, FASTER_RCNN_REGRESSOR = "box_classifier", "box_regressor"
RETINANET_PRIOR = 0.01  # focal-loss prior probability of RetinaNet's class biases


@dataclasses.dataclass(frozen=True)
class Classifier:
    """Where a model's classes are.

    Attributes:
        layer: the classification layer (outputs logits, one column per class,
            unless `builtin_activation` is set); for YOLOv8 the first level's,
            for class branches the last branch's.
        layout: str. How classes map to output columns: "plain" (column k is
            class k), "anchor_major" (channel = anchor * num_classes + class),
            "per_level" (one plain layer per pyramid level, in `layers`),
            "branched" (the columns of the Dense layers in `layers`, one after
            the other), "anchor_major_branched" (RetinaNet class branches,
            one class conv per branch in `layers`, joined anchor-major) or
            "per_pixel" (a segmenter's 1x1 logits conv, channel = class) or
            "two_stage" (Faster R-CNN's box classifier and box regressor, in `layers`).
        builtin_activation: str or None. An activation inside `layer` itself
            (e.g. `Dense(90, activation="softmax")` in a foreign model).
        output_activation: str or None. The activation between the logits and the
            model output ("softmax", "sigmoid" or None).
        layers: every classification layer (one per level for "per_level").
        anchors: int. Anchors per position ("anchor_major"), else 1.
        references: how to reach each of `layers` from the model: a layer name
            or an attribute path such as "classification_head.prediction_layer".
        default_bias: the bias init new classes get by default: "zeros", or a
            prior probability (RetinaNet's focal-loss prior 0.01).
        leading: per layer of `layers`, the columns before the first class's
            (Faster R-CNN's background column: 1); default 0 each.
        widths: per layer, the columns of each class (4 for box deltas); default 1 each.
    """

    layer: keras.layers.Layer
    layout: str
    builtin_activation: str | None
    output_activation: str | None
    layers: tuple[keras.layers.Layer, ...] = ()
    anchors: int = 1
    references: tuple[str, ...] = ()
    default_bias: str | float = "zeros"
    leading: tuple[int, ...] = ()
    widths: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.layers:
            object.__setattr__(self, "layers", (self.layer,))
        if not self.references:
            object.__setattr__(self, "references", (self.layer.name,))
        if not self.leading:
            object.__setattr__(self, "leading", (0,) * len(self.layers))
        if not self.widths:
            object.__setattr__(self, "widths", (1,) * len(self.layers))

    @property
    def num_classes(self) -> int:
        if self.layout == PLAIN:
            return int(self.layer.units)
        if self.layout == BRANCHED:
            return sum(int(layer.units) for layer in self.layers)
        if self.layout == ANCHOR_BRANCHED:
            return sum(int(layer.filters) for layer in self.layers) // self.anchors
        if self.layout == TWO_STAGE:
            return int(self.layer.units) - self.leading[0]
        return int(self.layer.filters) // self.anchors

    @property
    def is_detector(self) -> bool:
        return self.layout in (ANCHOR_MAJOR, PER_LEVEL, ANCHOR_BRANCHED, TWO_STAGE)

    @property
    def rebuilds_model(self) -> bool:
        """Whether class operations rebuild the whole model (KerasCV detectors and
        segmenters, whose class convs live inside their graph) rather than
        replace the classification layer."""
        return self.is_detector or self.layout == PER_PIXEL

    def channels(
        self, classes: Sequence[int], num_classes: int | None = None, layer: int = 0
    ) -> np.ndarray:
        """Output channels holding `classes` (every anchor's, anchor-major; each
        class's `widths[layer]` columns) in the `layer`-th class layer of this
        layout with `num_classes` classes (default: this one's).

        >>> retinanet_classifier.channels([0, 1], num_classes=5)   # 9 anchors
        array([ 0,  1,  5,  6, 10, 11, ...])
        >>> faster_rcnn_classifier.channels([1], layer=1)          # box deltas of class 1
        array([4, 5, 6, 7])
        """
        count = self.num_classes if num_classes is None else int(num_classes)
        width = self.widths[layer]
        classes = np.asarray(list(classes), dtype=np.int64)
        anchor_starts = np.arange(self.anchors, dtype=np.int64)[:, None, None] * count * width
        columns = classes[None, :, None] * width + np.arange(width, dtype=np.int64)[None, None]
        return self.leading[layer] + (anchor_starts + columns).reshape(-1)

    def level_weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(kernel, bias) of every classification layer, as numpy arrays.

        >>> [k.shape for k, _ in locate_classifier(yolov8).level_weights()]
        [(1, 1, 64, 3), (1, 1, 64, 3), (1, 1, 64, 3)]
        """
        if self.layout == PLAIN:
            return [self.kernel_and_bias()]
        if self.layout in (BRANCHED, TWO_STAGE):
            return [dense_kernel_and_bias(layer) for layer in self.layers]
        return [_conv_kernel_and_bias(layer) for layer in self.layers]

    def assign_levels(self, weights: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        """Writes (kernel, bias) back into every classification layer.

        >>> located.assign_levels(located.level_weights())   # a no-op round trip
        """
        if self.layout == PLAIN:
            (kernel, bias), *_ = weights
            self.assign(kernel, bias)
            return
        if self.layout in (BRANCHED, TWO_STAGE):
            for layer, (kernel, bias) in zip(self.layers, weights):
                assign_dense(layer, kernel, bias)
            return
        for layer, (kernel, bias) in zip(self.layers, weights):
            layer.kernel.assign(kernel)
            if layer.use_bias:
                layer.bias.assign(bias)

    def kernel_and_bias(self) -> tuple[np.ndarray, np.ndarray]:
        """Full kernel (features x classes) and bias (classes,) as numpy arrays
        (for detectors: the first classification layer's conv kernel and bias)."""
        self._check_single_layer()
        if self.layout not in (PLAIN, TWO_STAGE):
            return _conv_kernel_and_bias(self.layer)
        return dense_kernel_and_bias(self.layer)

    def assign(self, kernel: np.ndarray, bias: np.ndarray) -> None:
        """Writes a full kernel and bias back into the layer."""
        self._check_single_layer()
        if self.layout not in (PLAIN, TWO_STAGE):
            self.layer.kernel.assign(kernel)
            if self.layer.use_bias:
                self.layer.bias.assign(bias)
            return
        assign_dense(self.layer, kernel, bias)

    def _check_single_layer(self) -> None:
        if self.layout in (BRANCHED, ANCHOR_BRANCHED):
            raise ValueError(
                f"The classes are spread over {len(self.layers)} class branches "
                f"{[layer.name for layer in self.layers]}, each with its own features, so there "
                "is no single kernel; pass layer=<one branch's name>."
            )


def locate_classifier(model: keras.Model, layer: str | None = None) -> Classifier:
    """Finds the classification layer of `model`.

    Args:
        model: a functional or Sequential `keras.Model`, or a KerasCV RetinaNet
            or YOLOv8 detector.
        layer: str. Name of the classification layer; None looks for
            `predictions`, then for the Dense layer that produces the output.
            (Detectors: None, or the name of one of their class layers.)

    Raises:
        ValueError: naming the layer and what was expected, when `layer` does not
            exist, is not a Dense layer, or does not produce the model output.

    Example:

    >>> tt.surgery.locate_classifier(model).layer.name
    'predictions'
    >>> tt.surgery.locate_classifier(retinanet).layout
    'anchor_major'
    """
    kind = detector_kind(model)
    if kind is not None:
        return _locate_detector_classifier(model, kind, layer)
    if is_segmenter(model):
        return _locate_segmenter_classifier(model)
    names = [existing.name for existing in model.layers]
    if layer is not None and layer not in names:
        raise ValueError(
            f"Model {model.name!r} has no layer named {layer!r}. Its last layers are {names[-5:]}."
        )
    chain = _output_chain(model)  # output layer first, then its inputs, through activations
    branches = _class_branches(chain[-1])
    if branches:
        activation = _activation_name(chain[0]) if len(chain) > 1 else None
        return _locate_branch(model, branches, layer, activation)
    if layer is None and PREDICTIONS not in names and not isinstance(chain[-1], CLASSIFIER_LAYERS):
        raise ValueError(
            f"Model {model.name!r} has no recognisable classification layer: expected a Dense "
            f"layer named {PREDICTIONS!r}, or a Dense layer (optionally followed by activation "
            f"layers) producing the output, which comes from {chain[-1].name!r} "
            f"({type(chain[-1]).__name__}). Pass layer=<name of the classification layer>."
        )
    layer = layer or (PREDICTIONS if PREDICTIONS in names else chain[-1].name)
    candidate = model.get_layer(layer)
    if not isinstance(candidate, CLASSIFIER_LAYERS):
        raise ValueError(
            f"Layer {layer!r} of model {model.name!r} is a {type(candidate).__name__}, not a "
            "classification layer: expected a Dense layer mapping features to one column per "
            "class."
        )
    if candidate not in chain:
        raise ValueError(
            f"Layer {layer!r} of model {model.name!r} does not produce the model output (the "
            f"output comes from {chain[0].name!r}), so it is not the classification layer."
        )
    activations = [_activation_name(a) for a in chain[: chain.index(candidate)]]
    builtin = _activation_name(candidate) if isinstance(candidate, keras.layers.Dense) else None
    return Classifier(
        layer=candidate,
        layout="plain",
        builtin_activation=builtin,
        output_activation=(activations or [builtin])[-1] if (activations or builtin) else None,
    )


def _class_branches(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The Dense layers whose logits `layer` concatenates, if it is a class concatenation."""
    if not isinstance(layer, keras.layers.Concatenate):
        return []
    producers = input_layers(layer)
    return producers if all(isinstance(p, CLASSIFIER_LAYERS) for p in producers) else []


def _locate_branch(model, branches, layer: str | None, activation: str | None) -> Classifier:
    if layer is None:
        return Classifier(
            layer=branches[-1],
            layout=BRANCHED,
            builtin_activation=None,
            output_activation=activation,
            layers=tuple(branches),
            references=tuple(branch.name for branch in branches),
        )
    matching = [branch for branch in branches if branch.name == layer]
    if not matching:
        raise ValueError(
            f"Layer {layer!r} is not one of the class branches of model {model.name!r}: "
            f"{[branch.name for branch in branches]}."
        )
    return Classifier(
        layer=matching[0], layout=PLAIN, builtin_activation=None, output_activation=activation
    )


def _output_chain(model: keras.Model) -> list[keras.layers.Layer]:
    """The layer producing the output, then back through activation layers."""
    if len(model.outputs) != 1:
        raise ValueError(
            f"Model {model.name!r} has {len(model.outputs)} outputs; class operations need a "
            "classifier with one output."
        )
    current = producer(model.outputs[0])
    chain = [current]
    while isinstance(current, ACTIVATION_LAYERS):
        current = input_layers(current)[0]
        chain.append(current)
    return chain


def _activation_name(layer: keras.layers.Layer) -> str | None:
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    name = keras.activations.serialize(activation)
    name = name if isinstance(name, str) else getattr(activation, "__name__", str(name))
    return None if name == "linear" else name


def detector_kind(model: keras.Model) -> str | None:
    """The kind of a detector: "retinanet", "yolov8" (KerasCV's, ours or not),
    "faster_rcnn" (ours); else None.

    Looks the detector modules up in `sys.modules` instead of importing them: a
    model can only be a detector when they are loaded.

    Example:

    >>> detector_kind(tt.build_detector("retinanet", "resnet50", 3, weights=None))
    'retinanet'
    """
    keras_cv = sys.modules.get("keras_cv")
    if keras_cv is None:
        return None
    if isinstance(model, keras_cv.models.RetinaNet):
        return "retinanet"
    if isinstance(model, keras_cv.models.YOLOV8Detector):
        return "yolov8"
    two_stage = sys.modules.get("tfx_transfer.detection.faster_rcnn")
    if two_stage is not None and isinstance(model, two_stage.TransferFasterRCNN):
        return "faster_rcnn"
    return None


def is_segmenter(model: keras.Model) -> bool:
    """Whether `model` is a KerasCV DeepLabV3+ (ours or not); like `detector_kind`,
    without importing KerasCV."""
    keras_cv = sys.modules.get("keras_cv")
    return keras_cv is not None and isinstance(model, keras_cv.models.segmentation.DeepLabV3Plus)


def _locate_segmenter_classifier(model: keras.Model) -> Classifier:
    head = model.segmentation_head
    names = [layer.name for layer in head.layers]
    if SEGMENTATION_LOGITS not in names:
        raise ValueError(
            f"Segmenter {model.name!r} has no {SEGMENTATION_LOGITS!r} conv in its head (layers "
            f"{names}); KerasCV's own head ends in a softmax conv whose logits cannot be kept: "
            "build it with tt.build_segmenter."
        )
    index = names.index(SEGMENTATION_LOGITS)
    return Classifier(
        layer=head.layers[index],
        layout=PER_PIXEL,
        builtin_activation=None,
        output_activation="softmax",
        references=(f"segmentation_head.layers.{index}",),
    )


def _locate_detector_classifier(model: keras.Model, kind: str, layer: str | None) -> Classifier:
    num_classes = int(model.num_classes)
    head = getattr(model, "classification_head", None)
    if kind == "retinanet" and hasattr(head, "branch_classes"):
        convs = tuple(branch.prediction_layer for branch in head.branches)
        located = Classifier(
            layer=convs[-1],
            layout=ANCHOR_BRANCHED,
            builtin_activation=None,
            output_activation=None,
            layers=convs,
            anchors=int(head.anchors),
            references=tuple(
                RETINANET_BRANCH_LAYER.format(index=index) for index in range(len(convs))
            ),
            default_bias=RETINANET_PRIOR,
        )
    elif kind == "faster_rcnn":
        located = Classifier(
            layer=model.box_classifier,
            layout=TWO_STAGE,
            builtin_activation=None,
            output_activation="softmax",
            layers=(model.box_classifier, model.box_regressor),
            references=(FASTER_RCNN_CLASSIFIER, FASTER_RCNN_REGRESSOR),
            leading=(1, 0),
            widths=(1, 4),
        )
    elif kind == "retinanet":
        conv = model.classification_head.prediction_layer
        anchors, remainder = divmod(int(conv.filters), num_classes)
        if remainder:
            raise ValueError(
                f"RetinaNet {model.name!r}: its class conv has {conv.filters} channels, not a "
                f"multiple of its {num_classes} classes; the head is not anchor-major."
            )
        located = Classifier(
            layer=conv,
            layout=ANCHOR_MAJOR,
            builtin_activation=None,
            output_activation=None,
            anchors=anchors,
            references=(RETINANET_CLASS_LAYER,),
            default_bias=RETINANET_PRIOR,
        )
    else:
        names = {existing.name for existing in model.layers}
        references = tuple(
            YOLOV8_CLASS_LAYER.format(level=level)
            for level in range(1, 10)
            if YOLOV8_CLASS_LAYER.format(level=level) in names
        )
        if not references:
            raise ValueError(
                f"YOLOv8 detector {model.name!r} has no class convs named "
                f"{YOLOV8_CLASS_LAYER.format(level='N')!r}."
            )
        convs = tuple(model.get_layer(name) for name in references)
        located = Classifier(
            layer=convs[0],
            layout=PER_LEVEL,
            builtin_activation=None,
            output_activation="sigmoid",
            layers=convs,
            references=references,
        )
    if layer is not None and layer not in {c.name for c in located.layers}:
        raise ValueError(
            f"Layer {layer!r} is not a classification layer of {kind} detector {model.name!r}; "
            f"its class layers are {[c.name for c in located.layers]} (or pass layer=None)."
        )
    return located


def dense_kernel_and_bias(layer: keras.layers.Layer) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(layer, ColumnBlockDense):
        return layer.full_kernel_and_bias()
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    if layer.use_bias:
        return kernel, keras.ops.convert_to_numpy(layer.bias)
    return kernel, np.zeros(kernel.shape[1], kernel.dtype)


def assign_dense(layer: keras.layers.Layer, kernel: np.ndarray, bias: np.ndarray) -> None:
    if isinstance(layer, ColumnBlockDense):
        layer.assign_full(kernel, bias)
        return
    layer.kernel.assign(kernel)
    if layer.use_bias:
        layer.bias.assign(bias)


def _conv_kernel_and_bias(layer: keras.layers.Layer) -> tuple[np.ndarray, np.ndarray]:
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    if layer.use_bias:
        return kernel, keras.ops.convert_to_numpy(layer.bias)
    return kernel, np.zeros(kernel.shape[-1], kernel.dtype)
