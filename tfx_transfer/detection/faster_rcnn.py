"""`TransferFasterRCNN`: a two-stage detector whose box classifier maps 1024 features to
classes + background, as in the TF Object Detection API's Faster R-CNN.

Neither KerasCV 0.9 nor KerasHub ships a Keras 3 two-stage detector; this one
is built from KerasCV's `AnchorGenerator`, `ROIGenerator` (proposal NMS) and
box IoU, and our `ROIAlign` and `PerClassNonMaxSuppression`:

    images -> backbone level (P4 by default) -> 1x1 `feature_projection`
      -> region proposal network (`rpn_conv`, `rpn_objectness`, `rpn_deltas`
         over `len(anchor_sizes) x len(aspect_ratios)` anchors per cell)
      -> proposals (decoded, non-max suppressed)
      -> `roi_align` (7 x 7) -> `box_head_dense_1`, `box_head_dense_2` (1024, ReLU)
      -> `box_classifier`: Dense(1024 -> num_classes + 1) logits, column 0
         background, class k in column k + 1
      -> `box_regressor`: Dense(1024 -> 4 x num_classes), class-major: class
         k's box deltas in columns 4k .. 4k + 3

Training (`fit`) samples 256 anchors and `roi_samples` ROIs per image and adds
four losses (`rpn_objectness_loss`, `rpn_box_loss`, `classification_loss`,
`box_loss`); `predict` decodes each class's box and applies per-class
non-max suppression, returning KerasCV's detection dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import keras_cv
import numpy as np
import tensorflow as tf

from tfx_transfer.detection import two_stage_targets as targets
from tfx_transfer.detection.class_nms import PerClassNonMaxSuppression
from tfx_transfer.detection.models import dense_boxes
from tfx_transfer.detection.roi_align import ROIAlign
from tfx_transfer.heads.carrier import ClassCarrier, CompileMemory

BOX_CLASSIFIER, BOX_REGRESSOR = "box_classifier", "box_regressor"
LOSSES = ("rpn_objectness_loss", "rpn_box_loss", "classification_loss", "box_loss")
RPN_SAMPLES, RPN_POSITIVE_FRACTION = 256, 0.5


@keras.saving.register_keras_serializable(package="tfx_transfer")
class TransferFasterRCNN(CompileMemory, ClassCarrier, keras.Model):
    """Faster R-CNN with class metadata (build it with `tt.build_detector("faster_rcnn", ...)`).

    Calling it (`detector(images)`) returns the raw second stage:
    {"rois": [B, R, 4] proposals (y1, x1, y2, x2 pixels; padding -1),
    "classification": [B, R, num_classes + 1] logits (background first),
    "box": [B, R, 4 x num_classes] class-major deltas}; `predict` returns
    decoded, non-max suppressed detections in `bounding_box_format`.

    Args:
        backbone: a `keras_cv.models.Backbone` whose `pyramid_level_inputs`
            include `feature_level`.
        num_classes: int. Object classes (without background).
        bounding_box_format: str. KerasCV box format of labels and predictions.
        feature_level: str. The backbone level both stages read ("P4": stride 16).
        feature_channels: int. Channels of the 1x1 projection of that level.
        anchor_sizes: anchor sides in pixels (one anchor per size and ratio per cell).
        aspect_ratios: anchor height/width ratios.
        head_units: int. Width of the two fully connected box-head layers (1024).
        roi_size: int. ROIAlign output side.
        roi_samples: int. ROIs sampled per image in training (a quarter foreground).
        train_proposals: int. Proposals kept after NMS in training.
        test_proposals: int. Proposals kept after NMS in inference.
        prediction_decoder: a `PerClassNonMaxSuppression` (or its config).
        class_metadata, frozen_channels, frozen_layers: as for `TransferRetinaNet`.

    Example:

    >>> detector = tt.build_detector("faster_rcnn", "resnet50", 90, weights=None,
    ...                              input_shape=(512, 512, 3))
    >>> detector.get_layer("box_classifier").kernel.shape
    (1024, 91)
    """

    arch = "faster_rcnn"
    logits_activation = "softmax"
    multi_label = False

    def __init__(
        self,
        backbone,
        num_classes: int,
        bounding_box_format: str,
        *,
        feature_level: str = "P4",
        feature_channels: int = 256,
        anchor_sizes: Sequence[float] = (32.0, 64.0, 128.0, 256.0),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        head_units: int = 1024,
        roi_size: int = 7,
        roi_samples: int = 128,
        train_proposals: int = 300,
        test_proposals: int = 100,
        prediction_decoder=None,
        class_metadata=None,
        frozen_channels=None,
        frozen_layers=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(backbone, Mapping):
            backbone = keras.saving.deserialize_keras_object(backbone)
        levels = dict(getattr(backbone, "pyramid_level_inputs", None) or {})
        if feature_level not in levels:
            raise ValueError(
                f"Backbone {backbone.name!r} has no level {feature_level!r} "
                f"(pyramid_level_inputs: {levels}); pick feature_level from {sorted(levels)}."
            )
        object.__setattr__(self, "_backbone", backbone)  # its layers are tracked below
        self.num_classes = int(num_classes)
        self.bounding_box_format = bounding_box_format
        self.feature_level = feature_level
        self.feature_channels = int(feature_channels)
        self.anchor_sizes = tuple(float(size) for size in anchor_sizes)
        self.aspect_ratios = tuple(float(ratio) for ratio in aspect_ratios)
        self.head_units = int(head_units)
        self.roi_samples = int(roi_samples)
        self.train_proposals = int(train_proposals)
        self.test_proposals = int(test_proposals)
        self.stride = 2 ** int(feature_level[1:])
        anchors_per_cell = len(self.anchor_sizes) * len(self.aspect_ratios)

        self.feature_extractor = keras.Model(
            backbone.inputs, backbone.get_layer(levels[feature_level]).output
        )
        self.feature_projection = keras.layers.Conv2D(
            self.feature_channels, 1, name="feature_projection"
        )
        self.rpn_conv = keras.layers.Conv2D(
            self.feature_channels, 3, padding="same", activation="relu", name="rpn_conv"
        )
        self.rpn_objectness = keras.layers.Conv2D(
            anchors_per_cell, 1, kernel_initializer=_small_normal(), name="rpn_objectness"
        )
        self.rpn_deltas = keras.layers.Conv2D(
            4 * anchors_per_cell, 1, kernel_initializer=_small_normal(), name="rpn_deltas"
        )
        self.anchor_generator = keras_cv.layers.AnchorGenerator(
            "yxyx",
            sizes=[self.anchor_sizes[0]],
            scales=[size / self.anchor_sizes[0] for size in self.anchor_sizes],
            aspect_ratios=list(self.aspect_ratios),
            strides=[self.stride],
            clip_boxes=False,
        )
        self.roi_generator = keras_cv.layers.ROIGenerator(
            "yxyx",
            pre_nms_topk_train=4 * self.train_proposals,
            post_nms_topk_train=self.train_proposals,
            pre_nms_topk_test=4 * self.test_proposals,
            post_nms_topk_test=self.test_proposals,
        )
        self.roi_align = ROIAlign(roi_size, self.stride, name="roi_align")
        self.box_head_dense_1 = keras.layers.Dense(
            self.head_units, activation="relu", name="box_head_dense_1"
        )
        self.box_head_dense_2 = keras.layers.Dense(
            self.head_units, activation="relu", name="box_head_dense_2"
        )
        self.box_classifier = keras.layers.Dense(
            self.num_classes + 1, name=BOX_CLASSIFIER, dtype="float32"
        )
        self.box_regressor = keras.layers.Dense(
            4 * self.num_classes,
            kernel_initializer=_small_normal(),
            name=BOX_REGRESSOR,
            dtype="float32",
        )
        if isinstance(prediction_decoder, Mapping):
            prediction_decoder = keras.saving.deserialize_keras_object(prediction_decoder)
        self.prediction_decoder = prediction_decoder or PerClassNonMaxSuppression(
            bounding_box_format
        )
        self._seed_generator = keras.random.SeedGenerator()
        self._trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", *LOSSES)}
        self._build_layers()
        self._setup_transfer(class_metadata, frozen_channels, frozen_layers)

    def _build_layers(self) -> None:
        features = tuple(self.feature_extractor.output_shape)
        projected = (*features[:-1], self.feature_channels)
        self.feature_projection.build(features)
        self.rpn_conv.build(projected)
        self.rpn_objectness.build(projected)
        self.rpn_deltas.build(projected)
        pooled = self.roi_align.output_size**2 * self.feature_channels
        self.box_head_dense_1.build((None, pooled))
        self.box_head_dense_2.build((None, self.head_units))
        self.box_classifier.build((None, self.head_units))
        self.box_regressor.build((None, self.head_units))
        self.built = True

    @property
    def backbone(self) -> keras.Model:
        return self._backbone

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        """(None, height, width, 3): the backbone's input shape."""
        return tuple(self.feature_extractor.input_shape)

    @property
    def anchors(self) -> tf.Tensor:
        """Every anchor of the input size, [cells x anchors per cell, 4], (y1, x1, y2, x2)."""
        shape = self.input_shape[1:]
        return tf.concat(list(self.anchor_generator(image_shape=shape).values()), axis=0)

    @property
    def prediction_decoder(self) -> PerClassNonMaxSuppression:
        return self._prediction_decoder

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "prediction_decoder":
            # Untracked: it has no weights, and swapping decoders must not add layers.
            object.__setattr__(self, "_prediction_decoder", value)
            object.__setattr__(self, "predict_function", None)  # traced again with it
            return
        super().__setattr__(name, value)

    # Forward passes.

    def call(self, inputs, training=None):
        images = inputs["images"] if isinstance(inputs, Mapping) else inputs
        features = self._features(images, training)
        objectness, deltas = self._rpn(features)
        rois = self._proposals(images, objectness, deltas, training)
        logits, box_deltas = self._box_head(features, rois, training)
        return {"rois": rois, "classification": logits, "box": box_deltas}

    def _features(self, images, training):
        return self.feature_projection(self.feature_extractor(images, training=training))

    def _rpn(self, features):
        """Objectness logits [B, N] and anchor deltas [B, N, 4] (N: every anchor)."""
        hidden = self.rpn_conv(features)
        batch = tf.shape(features)[0]
        count = int(np.prod(self.rpn_objectness.compute_output_shape(features.shape)[1:]))
        objectness = tf.reshape(tf.cast(self.rpn_objectness(hidden), tf.float32), [batch, count])
        deltas = tf.reshape(tf.cast(self.rpn_deltas(hidden), tf.float32), [batch, count, 4])
        return objectness, deltas

    def _proposals(self, images, objectness, deltas, training):
        """Proposals [B, R, 4] in pixels (padding rows -1), no gradient."""
        boxes = targets.decode_boxes(tf.stop_gradient(deltas), self.anchors)
        boxes = _clip(boxes, images)
        rois, _ = self.roi_generator(
            boxes, tf.sigmoid(tf.stop_gradient(objectness)), training=training
        )
        return tf.stop_gradient(rois)

    def _box_head(self, features, rois, training):
        hidden = self._roi_features(features, rois, training)
        return self.box_classifier(hidden), self.box_regressor(hidden)

    def _roi_features(self, features, rois, training):
        pooled = self.roi_align(features, rois)
        shape = tf.shape(rois)
        flat = tf.reshape(pooled, [shape[0], shape[1], -1])
        hidden = self.box_head_dense_1(flat, training=training)
        return self.box_head_dense_2(hidden, training=training)

    def roi_features(self, images, boxes) -> np.ndarray:
        """The box head's 1024 features for given boxes (in `bounding_box_format`):
        [B, boxes per image, head_units]. `init="imprint"` uses them.

        Example:

        >>> detector.roi_features(images, [[[10, 10, 30, 30]]] * len(images)).shape
        (4, 1, 1024)
        """
        images = tf.cast(images, tf.float32)
        boxes = keras_cv.bounding_box.convert_format(
            tf.cast(boxes, tf.float32),
            source=self.bounding_box_format,
            target="yxyx",
            images=images,
        )
        features = self._features(images, False)
        return keras.ops.convert_to_numpy(self._roi_features(features, boxes, False))

    def decode_predictions(self, predictions, images):
        """Each ROI's box for every class, scored by the softmax, through the decoder."""
        rois = predictions["rois"]
        batch, count = tf.shape(rois)[0], tf.shape(rois)[1]
        deltas = tf.reshape(predictions["box"], [batch, count, self.num_classes, 4])
        boxes = _clip(targets.decode_boxes(deltas, rois[:, :, None, :]), images)
        scores = tf.nn.softmax(tf.cast(predictions["classification"], tf.float32))[..., 1:]
        valid = tf.reduce_all(rois >= 0.0, axis=-1, keepdims=True)
        scores = tf.where(valid, scores, 0.0)
        return self.prediction_decoder(boxes, scores, images)

    def predict_step(self, data):
        images = data[0] if isinstance(data, (tuple, list)) else data
        images = images["images"] if isinstance(images, Mapping) else images
        return self.decode_predictions(self(images, training=False), images)

    # Training.

    def compile(self, optimizer="adam", **kwargs):
        """`keras.Model.compile` with the detector's own losses (pass no `loss`); no XLA
        by default.

        Example:

        >>> detector.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9))
        """
        if kwargs.get("loss") is not None:
            raise ValueError(
                "TransferFasterRCNN computes its own losses (region proposals and box head); "
                "compile it without loss=."
            )
        kwargs.pop("loss", None)
        kwargs.setdefault("jit_compile", False)
        super().compile(optimizer=optimizer, **kwargs)
        self._remember_compile(**kwargs)

    @property
    def metrics(self):
        return list(self._trackers.values())

    def train_step(self, data):
        images, boxes, classes = self._unpack(data)
        with tf.GradientTape() as tape:
            losses = self.compute_losses(images, boxes, classes, training=True)
            total = tf.add_n(list(losses.values()))
            if self.losses:
                total += tf.add_n(self.losses)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(total / replicas)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._track(total, losses)

    def test_step(self, data):
        images, boxes, classes = self._unpack(data)
        losses = self.compute_losses(images, boxes, classes, training=False)
        return self._track(tf.add_n(list(losses.values())), losses)

    def compute_losses(self, images, boxes, classes, training=False) -> dict[str, tf.Tensor]:
        """The four losses for a batch; `boxes` [B, G, 4] in pixels (y1, x1, y2, x2),
        `classes` [B, G] (-1: padding).

        Example:

        >>> sorted(detector.compute_losses(images, boxes, classes))
        ['box_loss', 'classification_loss', 'rpn_box_loss', 'rpn_objectness_loss']
        """
        features = self._features(images, training)
        objectness, deltas = self._rpn(features)
        anchors = self.anchors
        positive, negative, anchor_targets = targets.anchor_labels(anchors, boxes, classes)
        chosen = targets.sample(
            positive, negative, RPN_SAMPLES, RPN_POSITIVE_FRACTION, self._seed_generator
        )
        chosen_count = tf.maximum(tf.reduce_sum(tf.cast(chosen, tf.float32)), 1.0)
        objectness_loss = tf.nn.sigmoid_cross_entropy_with_logits(
            tf.cast(positive, tf.float32), objectness
        )
        rpn_positive = tf.cast(chosen & positive, tf.float32)
        rpn_box_loss = tf.reduce_sum(_smooth_l1(anchor_targets - deltas) * rpn_positive)

        proposals = self._proposals(images, objectness, deltas, training)
        valid = tf.reduce_all(proposals >= 0.0, axis=-1)
        rois, labels, roi_targets, weights = targets.sample_rois(
            proposals, valid, boxes, classes, self.roi_samples, self._seed_generator
        )
        logits, box_deltas = self._box_head(features, rois, training)
        roi_count = tf.maximum(tf.reduce_sum(weights), 1.0)
        classification_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        per_class = tf.reshape(box_deltas, [tf.shape(rois)[0], -1, self.num_classes, 4])
        predicted = tf.gather(per_class, tf.maximum(labels - 1, 0), batch_dims=2)
        foreground = weights * tf.cast(labels > 0, tf.float32)
        return {
            "rpn_objectness_loss": tf.reduce_sum(objectness_loss * tf.cast(chosen, tf.float32))
            / chosen_count,
            "rpn_box_loss": rpn_box_loss / chosen_count,
            "classification_loss": tf.reduce_sum(classification_loss * weights) / roi_count,
            "box_loss": tf.reduce_sum(_smooth_l1(roi_targets - predicted) * foreground) / roi_count,
        }

    def _unpack(self, data):
        """(images, boxes in pixels (y1, x1, y2, x2), classes) from a KerasCV batch."""
        data = dense_boxes(data)
        if isinstance(data, Mapping):
            images, labels = data["images"], data["bounding_boxes"]
        else:
            images, labels = data[0], data[1]
        images = tf.cast(images, tf.float32)
        classes = tf.cast(labels["classes"], tf.int32)
        tf.debugging.assert_less(
            classes,
            self.num_classes,
            message=f"Box classes must be below the detector's {self.num_classes} classes",
        )
        boxes = keras_cv.bounding_box.convert_format(
            tf.cast(labels["boxes"], tf.float32),
            source=self.bounding_box_format,
            target="yxyx",
            images=images,
        )
        return images, boxes, classes

    def _track(self, total, losses):
        self._trackers["loss"].update_state(total)
        for name, value in losses.items():
            self._trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    def get_config(self) -> dict[str, Any]:
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "bounding_box_format": self.bounding_box_format,
            "feature_level": self.feature_level,
            "feature_channels": self.feature_channels,
            "anchor_sizes": list(self.anchor_sizes),
            "aspect_ratios": list(self.aspect_ratios),
            "head_units": self.head_units,
            "roi_size": self.roi_align.output_size,
            "roi_samples": self.roi_samples,
            "train_proposals": self.train_proposals,
            "test_proposals": self.test_proposals,
            "prediction_decoder": keras.saving.serialize_keras_object(self.prediction_decoder),
            **self._transfer_config(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TransferFasterRCNN:
        return cls(**config)


def _clip(boxes: tf.Tensor, images: tf.Tensor) -> tf.Tensor:
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    limits = tf.stack([height, width, height, width])
    return tf.clip_by_value(boxes, 0.0, limits)


def _smooth_l1(difference: tf.Tensor) -> tf.Tensor:
    """Smooth L1 (Huber, delta 1) summed over the 4 coordinates."""
    absolute = tf.abs(difference)
    return tf.reduce_sum(tf.where(absolute < 1.0, 0.5 * difference**2, absolute - 0.5), axis=-1)


def _small_normal() -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(stddev=0.01)
