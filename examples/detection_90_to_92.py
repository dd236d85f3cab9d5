"""A 90-class detector learns 2 new classes without forgetting, on the embedded
synthetic scenes (objects of the shapes classes on cluttered backgrounds).

    python examples/detection_90_to_92.py                         # ~6 min on 2 CPU cores
    python examples/detection_90_to_92.py --detector retinanet    # the same with RetinaNet
    python examples/detection_90_to_92.py --tiny                  # a smoke run

1. a YOLOv8 (or RetinaNet) detector on mobilenet_v3_small at 64 px whose
   backbone starts from the shipped 90-class classifier's (transfer from
   classification to detection); the backbone stays frozen and the heads train
   on scenes of the 90 classes;
2. `tt.expand_classes` grows the class convolutions from 90 to 92 classes
   (YOLOv8: one per level, and the inner class convolutions, 90 wide, with
   them; RetinaNet: its class convolution shared by the levels, anchor-major,
   from 9 x 90 to 9 x 92 channels), the old channels frozen, and only the
   class convolutions train on scenes of the 2 new classes plus scenes of old
   ones;
3. COCO mAP@.5 of old and new classes before and after (`tt.evaluate`), then
   a SavedModel with decoding and non-max suppression inside.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import keras

import tfx_transfer as tt
from tfx_transfer.data import shapes
from tfx_transfer.training import Stage

SIZE = 64
# Per detector: build options and stage settings. RetinaNet's default anchors, KerasCV's
# 32..512 px scaled to the input (4..64 px), leave most objects (boxes of ~20..45 px)
# without an anchor of IoU >= 0.5 on the coarse levels; these sizes fit them. Its 90-class
# heads diverged after a few epochs at 1e-3 without gradient clipping (classification loss
# back to that of predicting only background); KerasCV's guides clip to a global norm of 10.
DETECTORS = {
    "yolov8": ({}, {"learning_rate": 3e-3}),
    "retinanet": (
        {"anchor_sizes": (16, 24, 32, 48, 64)},
        {"learning_rate": 1e-3, "global_clipnorm": 10.0},
    ),
}


def transferred_backbone() -> keras.Model:
    """mobilenet_v3_small at 64 px with the shipped 90-class classifier's weights."""
    backbone = tt.build_backbone("mobilenet_v3_small", weights=None, input_shape=(SIZE, SIZE, 3))
    trained = tt.demo.base_model().get_layer("mobilenet_v3_small")
    backbone.set_weights(trained.get_weights())
    return backbone


def scenes(classes, count, seed, held_out=0):
    return tt.data.synthetic_detection(
        count,
        image_size=SIZE,
        classes=classes,
        max_objects=2,
        validation_images=held_out,
        test_images=held_out,
        batch_size=16,
        seed=seed,
        object_size=(0.35, 0.6),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Expand a detector from 90 to 92 classes.")
    parser.add_argument("--detector", choices=tuple(DETECTORS), default="yolov8")
    parser.add_argument("--tiny", action="store_true", help="tiny settings for a smoke test")
    args = parser.parse_args()
    base_images, new_images, test_images, epochs = (
        (16, 8, 8, 1) if args.tiny else (1200, 300, 180, 30)
    )
    started = time.time()
    keras.utils.set_random_seed(0)

    old = scenes(shapes.BASE_CLASSES, base_images, seed=0, held_out=test_images)
    options, settings = DETECTORS[args.detector]
    detector = tt.build_detector(
        args.detector, transferred_backbone(), 90, class_names=shapes.BASE_CLASSES, **options
    )
    stage = Stage(train="head", epochs=epochs, **settings)
    detector, _ = tt.fine_tune(detector, old, stages=[stage], verbose=0)
    trained_90 = time.time()

    new_classes = list(shapes.NOVEL_CLASSES)
    expanded = tt.expand_classes(detector, new_class_names=new_classes, freeze_old=True)
    # The new classes' scenes, plus some scenes of old classes (replay).
    mixed = scenes((*shapes.BASE_CLASSES, *new_classes), new_images, seed=1, held_out=test_images)
    stage = Stage(train="classifier", epochs=epochs, **settings)
    expanded, history = tt.fine_tune(expanded, mixed, stages=[stage], teacher=detector, verbose=0)

    report = tt.evaluate(expanded, mixed, reference=detector)
    print(f"{args.detector} on mobilenet_v3_small at {SIZE} px")
    print("| detector | old-class mAP@.5 | new-class mAP@.5 | old mAP@[.5:.95] |")
    print("|---|---|---|---|")
    print(f"| 90 classes | {report.reference_old_map50:.3f} | - | {report.reference_old_map:.3f} |")
    print(
        f"| 92 classes (old frozen) | {report.old_map50:.3f} | {report.new_map50:.3f} "
        f"| {report.old_map:.3f} |"
    )
    print(f"change on old classes, mAP@[.5:.95]: {report.old_map_change:+.3f}")

    export_root = tempfile.mkdtemp(prefix="detector92-")
    path = tt.export_saved_model(expanded, export_root)
    print(f"SavedModel with decoding and NMS: {path}")
    print(
        f"Wall time on this machine: {trained_90 - started:.0f} s for the 90-class detector, "
        f"{time.time() - trained_90:.0f} s for expansion, fine-tuning, evaluation and export"
    )


if __name__ == "__main__":
    main()
