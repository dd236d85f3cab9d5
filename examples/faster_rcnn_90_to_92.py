"""A 90-class Faster R-CNN learns 2 new classes without forgetting, on the embedded
synthetic scenes (objects of the shapes classes on cluttered backgrounds).

    python examples/faster_rcnn_90_to_92.py            # ~8 min on 2 CPU cores
    python examples/faster_rcnn_90_to_92.py --tiny     # a smoke run (under a minute)

1. a two-stage Faster R-CNN on mobilenet_v3_small at 128 px whose backbone
   starts from the shipped 90-class classifier's (transfer from classification
   to detection). Both stages read the backbone's P4 level (stride 16, an 8 x 8
   grid); its box classifier is Dense(1024 -> 91), column 0 background, and its
   box regressor Dense(1024 -> 4 x 90), class-major. The backbone stays frozen;
   everything after it (projection, region proposal network, the two 1024-wide
   box-head layers, classifier and regressor) trains on scenes of the 90 classes;
2. `tt.expand_classes(..., freeze_old=True)` grows the box classifier from
   1024 x 91 to 1024 x 93 and the box regressor from 1024 x 360 to 1024 x 368,
   the old columns (and the background column) bit-exact and held fixed by a
   constraint; then only those two layers train (`Stage(train="classifier")`)
   on scenes of the 2 new classes plus scenes of old ones (replay);
3. COCO mAP@.5 of old and new classes, against the 90-class detector
   (`tt.evaluate`), then a SavedModel with decoding and non-max suppression inside.

Why `train="classifier"`: everything the old columns read (backbone, proposals,
the box head's 1024 features) stays frozen, and their own weights are fixed, so
the old classes' raw logits and box deltas are exactly those of the 90-class
detector. `train="head"` would give the new classes more to learn with, but it
moves the region proposal network and the shared 1024 features under the old
columns, and the old classes would drift. What can still change for the old
classes is the softmax: its denominator now also holds the two new columns, so
an old object's score drops where a new class's logit is high (and, on new
objects, the new classes take over the scores that false old-class detections
had).

Settings: 128 px, up to 2 objects per scene of 45..77 px (radius 0.35..0.6 of
half the side, as in the YOLOv8 example), anchors of 32, 64 and 96 px in three
aspect ratios; 800 training scenes, 8 epochs at 1e-3 (Adam), then 160 scenes of
the new classes and 160 of old ones for 10 epochs. In trial runs (600 scenes,
6 epochs, mAP@.5 of the 90-class detector on 90 test scenes) 128 px reached
0.89; 64 px, where P4 is only 4 x 4, 0.47 in about 60% of the time; and smaller
objects at 128 px (26..51 px, the pixel scale of the classifier's images, up to
3 per scene, anchors of 24, 48 and 72 px) 0.59.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import keras
import tensorflow as tf

import tfx_transfer as tt
from tfx_transfer.data import shapes
from tfx_transfer.training import Stage

SIZE = 128
ANCHOR_SIZES = (32.0, 64.0, 96.0)
OBJECT_SIZE = (0.35, 0.6)
MAX_OBJECTS = 2
BATCH = 16
OLD = len(shapes.BASE_CLASSES)


def transferred_backbone() -> keras.Model:
    """mobilenet_v3_small at 128 px with the shipped 90-class classifier's weights."""
    backbone = tt.build_backbone("mobilenet_v3_small", weights=None, input_shape=(SIZE, SIZE, 3))
    trained = tt.demo.base_model().get_layer("mobilenet_v3_small")
    backbone.set_weights(trained.get_weights())
    return backbone


def scenes(classes, count, seed, held_out=0):
    return tt.data.synthetic_detection(
        count,
        image_size=SIZE,
        classes=classes,
        max_objects=MAX_OBJECTS,
        test_images=held_out,
        batch_size=BATCH,
        seed=seed,
        object_size=OBJECT_SIZE,
    )


def as_new_classes(batches: tf.data.Dataset) -> tf.data.Dataset:
    """Batches of scenes of the 2 new classes (labelled 0, 1) labelled as classes 90
    and 91 of the expanded detector; padding (-1) stays."""

    def shift(batch):
        classes = batch["bounding_boxes"]["classes"]
        shifted = tf.where(classes >= 0, classes + OLD, classes)
        return {**batch, "bounding_boxes": {**batch["bounding_boxes"], "classes": shifted}}

    return batches.map(shift)


def kernel_shapes(detector) -> str:
    shapes_ = [
        f"{name} {'x'.join(str(d) for d in detector.get_layer(name).kernel.shape)}"
        for name in ("box_classifier", "box_regressor")
    ]
    return ", ".join(shapes_)


def main() -> None:
    parser = argparse.ArgumentParser(description="Expand a Faster R-CNN from 90 to 92 classes.")
    parser.add_argument("--tiny", action="store_true", help="tiny settings for a smoke test")
    args = parser.parse_args()
    base_images, new_images, test_images, base_epochs, new_epochs = (
        (16, 16, 8, 1, 1) if args.tiny else (800, 160, 180, 8, 10)
    )
    started = time.time()
    keras.utils.set_random_seed(0)

    old = scenes(shapes.BASE_CLASSES, base_images, seed=0, held_out=test_images)
    detector = tt.build_detector(
        "faster_rcnn",
        transferred_backbone(),
        OLD,
        class_names=shapes.BASE_CLASSES,
        anchor_sizes=ANCHOR_SIZES,
        feature_level="P4",
        head_units=1024,
    )
    stage = Stage(train="head", epochs=base_epochs, learning_rate=1e-3)
    detector, _ = tt.fine_tune(detector, old, stages=[stage], verbose=0)
    trained_90 = time.time()

    new_classes = list(shapes.NOVEL_CLASSES)
    expanded = tt.expand_classes(detector, new_class_names=new_classes, freeze_old=True)
    print(f"90 classes: {kernel_shapes(detector)}")
    print(f"92 classes: {kernel_shapes(expanded)}")
    # Scenes of the 2 new classes, plus as many scenes of old classes (replay),
    # so that the new columns also learn where they must stay low.
    novel = scenes(new_classes, new_images, seed=1, held_out=test_images)
    replay = scenes(shapes.BASE_CLASSES, new_images, seed=2)
    train = as_new_classes(novel.train).concatenate(replay.train)
    train = train.shuffle(int(train.cardinality()), seed=0)
    stage = Stage(train="classifier", epochs=new_epochs, learning_rate=1e-3)
    expanded, _ = tt.fine_tune(expanded, train, stages=[stage], verbose=0)

    # Test scenes: those of the old classes and those of the new ones.
    test = old.test.concatenate(as_new_classes(novel.test))
    report = tt.evaluate(expanded, test, reference=detector)
    print("| detector | old-class mAP@.5 | new-class mAP@.5 | old mAP@[.5:.95] |")
    print("|---|---|---|---|")
    print(f"| 90 classes | {report.reference_old_map50:.3f} | - | {report.reference_old_map:.3f} |")
    print(
        f"| 92 classes (old frozen) | {report.old_map50:.3f} | {report.new_map50:.3f} "
        f"| {report.old_map:.3f} |"
    )
    print(f"change on old classes, mAP@[.5:.95]: {report.old_map_change:+.3f}")
    # The same on the old classes' scenes alone: no new objects to take over.
    alone = tt.evaluate(expanded, old.test, reference=detector)
    print(
        f"old classes on their own scenes only, mAP@.5: {alone.reference_old_map50:.3f} "
        f"(90 classes) -> {alone.old_map50:.3f} (92 classes)"
    )

    export_root = tempfile.mkdtemp(prefix="faster-rcnn92-")
    path = tt.export_saved_model(expanded, export_root)
    print(f"SavedModel with decoding and NMS: {path}")
    print(
        f"Wall time on this machine: {trained_90 - started:.0f} s for the 90-class detector, "
        f"{time.time() - trained_90:.0f} s for expansion, fine-tuning, evaluation and export"
    )


if __name__ == "__main__":
    main()
