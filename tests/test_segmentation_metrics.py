"""Segmentation metrics: confusion, IoU, mean IoU and pixel accuracy on hand-made
masks, and `evaluate_segmenter` on 1x1-conv models whose argmax is known."""

import json
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfx_transfer.core.metadata import ClassMetadata, TransferModel
from tfx_transfer.segmentation.metrics import (
    SegmentationReport,
    evaluate_segmenter,
    segmentation_confusion,
    segmentation_report,
)

# --- segmentation_confusion / segmentation_report on a 2x3 pair ----------------

TRUTH = np.array([[0, 0, 1], [2, 255, 1]])
PREDICTED = np.array([[0, 1, 1], [1, 2, 0]])
# Scored (true, predicted) pairs, the 255 pixel left out (its prediction 2 too):
# (0,0) (0,1) (1,1) / (2,1) (1,0)  -> 5 pixels, 2 correct.
CONFUSION = [[1, 1, 0], [1, 1, 0], [0, 1, 0]]
# IoU = TP / (row + column - TP):
#   class 0: 1 / (2 + 2 - 1) = 1/3
#   class 1: 1 / (2 + 3 - 1) = 1/4
#   class 2: 0 / (1 + 0 - 0) = 0      (in the truth, never predicted)
# mean = (1/3 + 1/4 + 0) / 3 = 7/36; pixel accuracy = 2/5.


def test_confusion_iou_mean_and_pixel_accuracy_by_hand():
    confusion = segmentation_confusion(TRUTH, PREDICTED, 3)
    assert confusion.dtype == np.int64 and confusion.tolist() == CONFUSION
    # a trailing mask channel and a batch axis change nothing
    batched = segmentation_confusion(TRUTH[None, ..., None], PREDICTED[None], 3)
    assert batched.tolist() == CONFUSION

    report = segmentation_report(confusion, ["a", "b", "c"], num_images=1)
    assert report.per_class == pytest.approx({"a": 1 / 3, "b": 1 / 4, "c": 0.0})
    assert report.mean_iou == pytest.approx(7 / 36)
    assert report.pixel_accuracy == pytest.approx(2 / 5)
    assert (report.num_images, report.num_pixels) == (1, 5)
    assert report.old_classes is None and report.per_step is None

    # old_classes=2 (int or names): old = (1/3 + 1/4) / 2 = 7/24, new = 0
    for old in (2, ["a", "b"]):
        split = segmentation_report(confusion, ["a", "b", "c"], old_classes=old)
        assert split.old_classes == 2
        assert split.old_mean_iou == pytest.approx(7 / 24)
        assert split.new_mean_iou == 0.0


def test_ignore_index_can_be_changed_or_disabled():
    truth = np.where(TRUTH == 255, 9, TRUTH)
    assert segmentation_confusion(truth, PREDICTED, 3, ignore_index=9).tolist() == CONFUSION
    # with ignore_index=0, 255 is an ordinary truth value, out of range for 3 classes
    with pytest.raises(ValueError, match=r"found \[255\]"):
        segmentation_confusion(TRUTH, PREDICTED, 3, ignore_index=0)
    assert segmentation_confusion(truth, PREDICTED, 10, ignore_index=None)[9, 2] == 1


def test_a_class_absent_from_truth_and_prediction_is_none_and_left_out():
    # Truth [0 0], predicted [0 1], 3 classes:
    #   class 0: 1 / (2 + 1 - 1) = 1/2
    #   class 1: 0 / (0 + 1 - 0) = 0     (predicted only: present, counts)
    #   class 2: absent from both -> None
    # mean = (1/2 + 0) / 2 = 1/4; pixel accuracy 1/2.
    confusion = segmentation_confusion([[0, 0]], [[0, 1]], 3)
    report = segmentation_report(confusion, ["a", "b", "c"], old_classes=1)
    assert report.per_class == {"a": 0.5, "b": 0.0, "c": None}
    assert report.mean_iou == 0.25
    assert report.pixel_accuracy == 0.5
    assert (report.old_mean_iou, report.new_mean_iou) == (0.5, 0.0)
    # the 2x3 case with a 4th, absent class: same mean 7/36
    four = segmentation_report(segmentation_confusion(TRUTH, PREDICTED, 4), list("abcd"))
    assert four.per_class["d"] is None
    assert four.mean_iou == pytest.approx(7 / 36)


def test_out_of_range_values_raise_naming_them():
    with pytest.raises(ValueError, match=r"truth values must index the 3 classes.*found \[-1, 7\]"):
        segmentation_confusion([[0, 7, -1, 255]], [[0, 0, 0, 0]], 3)
    with pytest.raises(ValueError, match=r"predicted values .* found \[3\]"):
        segmentation_confusion([[0, 1]], [[0, 3]], 3)
    with pytest.raises(ValueError, match="same shape"):
        segmentation_confusion([[0, 1]], [[0, 1, 1]], 3)
    with pytest.raises(ValueError, match="no pixels"):
        segmentation_report(np.zeros((2, 2), int), ["a", "b"])
    with pytest.raises(ValueError, match="first class names"):
        segmentation_report(CONFUSION, ["a", "b", "c"], old_classes=["b"])


# --- evaluate_segmenter ----------------------------------------------------------

# A 1x1 conv with kernel K maps a pixel that is one-hot on channel k to logits K[k],
# so the model's prediction is a known function of the input's "class map" X.
X = np.array(
    [
        [[0, 1, 1], [2, 3, 3]],  # image 1
        [[3, 0, 3], [0, 0, 2]],  # image 2
    ]
)
MASKS = np.array(
    [
        [[0, 0, 1], [2, 3, 255]],
        [[3, 1, 2], [0, 255, 2]],
    ]
)
IMAGES = np.eye(4, dtype="float32")[X]  # (2, 2, 3, 4)
# Expanded model (a, b, c, d; c added by step 1, d by step 2): predicts X.
# Scored (true, predicted): image 1 (0,0) (0,1) (1,1) (2,2) (3,3);
#                           image 2 (3,3) (1,0) (2,3) (0,0) (2,2).
EXPANDED_CONFUSION = [[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 2, 1], [0, 0, 0, 2]]
# columns 3 2 2 3; IoU a = 2/(3+3-2) = 1/2, b = 1/(2+2-1) = 1/3,
#                   c = 2/(3+2-2) = 2/3, d = 2/(2+3-2) = 2/3
# mean = (1/2 + 1/3 + 2/3 + 2/3) / 4 = 13/24; pixel accuracy 7/10.
# old = 3 (before the last expansion): (1/2 + 1/3 + 2/3) / 3 = 1/2; new (d) = 2/3.
# per step: original (a, b) = 5/12, step 1 (c) = 2/3, step 2 (d) = 2/3.
#
# Reference (a, b, c; maps channel 3 to c): predicts X with 3 -> 2.
# Scored pairs: (0,0) (0,1) (1,1) (2,2) (3,2) / (3,2) (1,0) (2,2) (0,0) (2,2)
#   rows a [2 1 0], b [1 1 0], c [0 0 3], d [0 0 2]; columns 3 2 5
#   IoU a = 1/2, b = 1/3, c = 3/(3+5-3) = 3/5 -> old mean (1/2 + 1/3 + 3/5) / 3 = 43/90
# change = 1/2 - 43/90 = 1/45.
EXPANSIONS = (
    {"operation": "expand_classes", "old_classes": 2, "new_classes": 1, "added": ["c"]},
    {"operation": "expand_classes", "old_classes": 3, "new_classes": 1, "added": ["d"]},
)


def conv_model(kernel, names, history=()):
    """(B, H, W, 4) -> (B, H, W, len(names)) logits = pixels @ kernel."""
    inputs = keras.Input((None, None, kernel.shape[0]))
    layer = keras.layers.Conv2D(kernel.shape[1], 1, use_bias=False, name="logits")
    outputs = layer(inputs)
    layer.set_weights([kernel.reshape(1, 1, *kernel.shape).astype("float32")])
    return TransferModel(
        inputs, outputs, class_metadata=ClassMetadata(tuple(names), history=history)
    )


def expanded_and_reference():
    expanded = conv_model(np.eye(4), "abcd", EXPANSIONS)
    reference = conv_model(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0.5]]), "abc")
    return expanded, reference


def test_old_new_reference_change_and_steps_by_hand():
    expanded, reference = expanded_and_reference()
    report = evaluate_segmenter(expanded, (IMAGES, MASKS), reference=reference)
    assert isinstance(report, SegmentationReport)
    assert report.confusion == EXPANDED_CONFUSION
    assert report.class_names == ["a", "b", "c", "d"]
    assert (report.num_images, report.num_pixels) == (2, 10)
    assert report.per_class == pytest.approx({"a": 1 / 2, "b": 1 / 3, "c": 2 / 3, "d": 2 / 3})
    assert report.mean_iou == pytest.approx(13 / 24)
    assert report.pixel_accuracy == pytest.approx(7 / 10)
    assert report.old_classes == 3
    assert report.old_mean_iou == pytest.approx(1 / 2)
    assert report.new_mean_iou == pytest.approx(2 / 3)
    assert report.reference_old_mean_iou == pytest.approx(43 / 90)
    assert report.old_mean_iou_change == pytest.approx(1 / 45)
    assert report.per_step == pytest.approx({"original": 5 / 12, "step 1": 2 / 3, "step 2": 2 / 3})


def test_old_classes_argument_overrides_the_history():
    # old = (a, b): 5/12; new = (c, d): 2/3; reference a, b: (1/2 + 1/3) / 2 = 5/12; change 0
    expanded, reference = expanded_and_reference()
    report = evaluate_segmenter(
        expanded, (IMAGES, MASKS), reference=reference, old_classes=["a", "b"]
    )
    assert report.old_classes == 2
    assert report.old_mean_iou == pytest.approx(5 / 12)
    assert report.new_mean_iou == pytest.approx(2 / 3)
    assert report.reference_old_mean_iou == pytest.approx(5 / 12)
    assert report.old_mean_iou_change == pytest.approx(0.0)


def test_arrays_dataset_and_segmentation_data_give_the_same_report():
    expanded, reference = expanded_and_reference()
    expected = evaluate_segmenter(expanded, (IMAGES, MASKS), reference=reference).to_dict()
    # batches of one image, masks with a channel axis: the confusion adds up
    dataset = tf.data.Dataset.from_tensor_slices((IMAGES, MASKS[..., None])).batch(1)
    assert evaluate_segmenter(expanded, dataset, reference=reference).to_dict() == expected
    keras_cv_style = tf.data.Dataset.from_tensor_slices(
        {"images": IMAGES, "segmentation_masks": MASKS}
    ).batch(2)
    assert evaluate_segmenter(expanded, keras_cv_style, reference=reference).to_dict() == expected
    # SegmentationData-like: no test split -> validation; its ignore index (9) is used
    masks9 = np.where(MASKS == 255, 9, MASKS)
    data = types.SimpleNamespace(
        train=None,
        validation=tf.data.Dataset.from_tensor_slices((IMAGES, masks9)).batch(2),
        test=None,
        ignore_index=9,
        class_names=["a", "b", "c", "d"],
    )
    assert evaluate_segmenter(expanded, data, reference=reference).to_dict() == expected
    # the ignore_index argument wins over the data's
    with pytest.raises(ValueError, match=r"found \[9\]"):
        evaluate_segmenter(expanded, data, ignore_index=255)


def test_model_without_metadata_and_errors():
    inputs = keras.Input((None, None, 4))
    layer = keras.layers.Conv2D(4, 1, use_bias=False)
    plain = keras.Model(inputs, layer(inputs))
    layer.set_weights([np.eye(4, dtype="float32").reshape(1, 1, 4, 4)])
    report = evaluate_segmenter(plain, (IMAGES, MASKS))
    assert report.class_names == ["class_0", "class_1", "class_2", "class_3"]
    assert report.mean_iou == pytest.approx(13 / 24)
    assert report.old_classes is None and report.per_step is None
    with pytest.raises(ValueError, match=r"truth values .* found \[4\]"):
        evaluate_segmenter(plain, (IMAGES, np.where(MASKS == 3, 4, MASKS)))
    with pytest.raises(ValueError, match=r"must output \(B, H, W, 4\)"):
        evaluate_segmenter(plain, (IMAGES, MASKS[:, :1]))
    with pytest.raises(ValueError, match="got no images"):
        evaluate_segmenter(plain, (IMAGES[:0], MASKS[:0]))


def test_table_and_json():
    expanded, reference = expanded_and_reference()
    report = evaluate_segmenter(expanded, (IMAGES, MASKS), reference=reference)
    table = str(report)
    for line in (
        "mean_iou                0.5417",  # 13/24
        "pixel_accuracy          0.7000",
        "old_mean_iou_change     0.0222",  # 1/45
        "original: mean_iou      0.4167",  # 5/12
        "step 1: mean_iou        0.6667",
        "step 2: mean_iou        0.6667",
    ):
        assert line in table.splitlines(), table
    detailed = report.table(per_class=True)
    assert "  b" in detailed and "IoU 0.3333  pixels 2" in detailed
    assert "IoU -" in segmentation_report([[1, 0], [0, 0]], ["a", "b"]).table(per_class=True)
    assert json.loads(report.to_json()) == report.to_dict()
    assert json.loads(report.to_json())["per_step"]["step 1"] == pytest.approx(2 / 3)
