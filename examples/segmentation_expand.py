"""A segmenter learns 2 new classes without forgetting its old ones, on the embedded
synthetic scenes (shapes on cluttered backgrounds, with exact masks).

    python examples/segmentation_expand.py            # 10-20 min on 2 CPU cores
    python examples/segmentation_expand.py --tiny     # a smoke run

1. a DeepLabV3+ on mobilenet_v3_small at 64 px whose backbone starts from the
   shipped 90-class classifier's (transfer from classification to
   segmentation); the backbone stays frozen and the head trains on scenes of
   8 old classes (plus background);
2. `tt.expand_classes` grows the 1x1 logits conv from 9 to 11 channels, two
   ways: (a) the old channels frozen and only the logits conv trains, so the
   old classes' outputs stay exactly the base model's; (b) the whole head
   trains and `tt.restore_old_classes` puts the old channels back (the layers
   before them moved, so the old classes change);
3. mean IoU of old and new classes, before and after (`tt.evaluate`), then a
   SavedModel whose signatures return per-pixel class ids and probabilities.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import keras

import tfx_transfer as tt
from tfx_transfer.data import shapes

SIZE = 64
OLD_CLASSES = list(shapes.BASE_CLASSES[::11][:8])  # 8 classes of several colours and shapes
NEW_CLASSES = list(shapes.NOVEL_CLASSES)


def transferred_backbone() -> keras.Model:
    """mobilenet_v3_small at 64 px with the shipped 90-class classifier's weights."""
    backbone = tt.build_backbone("mobilenet_v3_small", weights=None, input_shape=(SIZE, SIZE, 3))
    backbone.set_weights(tt.demo.base_model().get_layer("mobilenet_v3_small").get_weights())
    return backbone


def scenes(classes, count, test_images, seed):
    return tt.data.synthetic_segmentation(
        count,
        classes=classes,
        image_size=SIZE,
        batch_size=16,
        test_images=test_images,
        seed=seed,
        object_size=(0.3, 0.55),
    )


def train(model, data, epochs, part="head"):
    tt.training.set_trainable(model, part)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=data.ignore_index),
    )
    model.fit(data.train, epochs=epochs, verbose=0)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description="Add 2 classes to a segmenter.")
    parser.add_argument("--tiny", action="store_true", help="tiny settings for a smoke test")
    args = parser.parse_args()
    old_images, new_images, test_images, epochs = (4, 4, 2, 1) if args.tiny else (480, 240, 64, 12)
    started = time.time()
    keras.utils.set_random_seed(0)

    old = scenes(OLD_CLASSES, old_images, test_images, seed=0)
    base = tt.build_segmenter(
        "deeplab_v3_plus", transferred_backbone(), old.num_classes, class_names=old.class_names
    )
    train(base, old, epochs)
    trained_base = time.time()

    # Scenes of old and new classes together: the old objects are the replay.
    mixed = scenes(OLD_CLASSES + NEW_CLASSES, new_images, test_images, seed=1)
    frozen = tt.expand_classes(base, new_class_names=NEW_CLASSES, freeze_old=True)
    train(frozen, mixed, epochs, part="classifier")
    restored = train(tt.expand_classes(base, new_class_names=NEW_CLASSES), mixed, epochs)
    tt.restore_old_classes(restored, base)

    print("| segmenter | old-class mIoU | new-class mIoU | change on old classes |")
    print("|---|---|---|---|")
    report = None
    for name, model in (("(a) freeze_old", frozen), ("(b) train, restore_old_classes", restored)):
        report = tt.evaluate(model, mixed, reference=base)
        if name.startswith("(a)"):
            print(
                f"| base ({old.num_classes} classes) | {report.reference_old_mean_iou:.3f} | - | - |"
            )
        print(
            f"| {name} | {report.old_mean_iou:.3f} | {report.new_mean_iou:.3f} "
            f"| {report.old_mean_iou_change:+.3f} |"
        )
    print(f"pixel accuracy of (b): {report.pixel_accuracy:.3f}")

    path = tt.export_saved_model(frozen, tempfile.mkdtemp(prefix="segmenter-"))
    print(f"SavedModel (class_ids and probabilities per pixel): {path}")
    print(
        f"Wall time on this machine: {trained_base - started:.0f} s for the base segmenter, "
        f"{time.time() - trained_base:.0f} s for both expansions, training, evaluation and export"
    )


if __name__ == "__main__":
    main()
