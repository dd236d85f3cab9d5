"""Against forgetting: distillation from the original model (Learning without
Forgetting, Li & Hoiem 2016) and weight aligning of new classes (Zhao et al. 2020).

Both plug into plain `fit`: distillation is a Keras loss whose targets carry
the original model's logits next to the labels.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfx_transfer.surgery import locate_classifier


@keras.saving.register_keras_serializable(package="tfx_transfer")
class DistillationLoss(keras.losses.Loss):
    """Cross-entropy on the labels plus distillation of the old classes' logits.

    `y_true` is `[one-hot labels (num_classes) | teacher logits (num_old_classes)]`
    (see `with_teacher_logits`); `y_pred` are the student's logits. The loss is
    CE(labels, student) + weight * T^2 * KL(softmax(teacher / T) || softmax(student_old / T)).

    Args:
        num_old_classes: int. The teacher's classes (the student's first columns).
        temperature: float. Softens both distributions.
        weight: float. Weight of the distillation term.
    """

    def __init__(
        self, num_old_classes: int, temperature: float = 2.0, weight: float = 1.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.num_old_classes = int(num_old_classes)
        self.temperature = float(temperature)
        self.weight = float(weight)

    def call(self, y_true, y_pred):
        num_classes = ops.shape(y_pred)[-1]
        labels, teacher = y_true[:, :num_classes], y_true[:, num_classes:]
        cross_entropy = keras.losses.categorical_crossentropy(labels, y_pred, from_logits=True)
        t = self.temperature
        target = ops.softmax(teacher / t, axis=-1)
        log_student = ops.log_softmax(y_pred[:, : self.num_old_classes] / t, axis=-1)
        log_target = ops.log_softmax(teacher / t, axis=-1)
        kl = ops.sum(target * (log_target - log_student), axis=-1)
        return cross_entropy + self.weight * t * t * kl

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_old_classes": self.num_old_classes,
            "temperature": self.temperature,
            "weight": self.weight,
        }


@keras.saving.register_keras_serializable(package="tfx_transfer")
def label_accuracy(y_true, y_pred):
    """Accuracy for `DistillationLoss` targets (labels first, teacher logits after).

    Registered, so that a model compiled for distillation (a `tt.fine_tune`
    checkpoint) loads with `tt.load_model`.
    """
    labels = ops.argmax(y_true[:, : ops.shape(y_pred)[-1]], axis=-1)
    return ops.cast(ops.equal(labels, ops.argmax(y_pred, axis=-1)), "float32")


def with_teacher_logits(
    data: tf.data.Dataset, teacher: keras.Model, num_classes: int
) -> tf.data.Dataset:
    """(images, int labels[, sample weights]) batches -> (images, [one-hot labels |
    teacher logits][, sample weights]) for `DistillationLoss`; the teacher runs in
    inference mode. (Use sample weights rather than `class_weight`, which expects
    plain labels.)"""

    def add_logits(images, labels, *weights):
        targets = tf.concat(
            [
                tf.one_hot(tf.cast(labels, tf.int32), num_classes),
                tf.cast(teacher(images, training=False), tf.float32),
            ],
            axis=-1,
        )
        return (images, targets, *weights)

    return data.map(add_logits)


def with_class_weights(data: tf.data.Dataset, class_weight: dict[int, float]) -> tf.data.Dataset:
    """(images, int labels) batches -> (images, labels, per-sample class weights)."""
    table = tf.constant([class_weight[i] for i in range(len(class_weight))], tf.float32)
    return data.map(lambda images, labels: (images, labels, tf.gather(table, labels)))


def align_weights(model: keras.Model, num_old_classes: int, layer: str | None = None) -> float:
    """Weight aligning: scales the new classes' kernel columns and biases so that
    their mean norm equals the old columns' (new classes trained on few images
    otherwise get outsized logits). Returns the factor applied.

    Example:

    >>> tt.training.align_weights(expanded, num_old_classes=90)
    0.83
    """
    classifier = locate_classifier(model, layer)
    kernel, bias = classifier.kernel_and_bias()
    if not 0 < num_old_classes < kernel.shape[1]:
        raise ValueError(
            f"num_old_classes must be between 1 and {kernel.shape[1] - 1}; got {num_old_classes}."
        )
    norms = np.linalg.norm(kernel, axis=0)
    factor = float(norms[:num_old_classes].mean() / norms[num_old_classes:].mean())
    kernel[:, num_old_classes:] *= factor
    bias[num_old_classes:] *= factor
    classifier.assign(kernel, bias)
    return factor
