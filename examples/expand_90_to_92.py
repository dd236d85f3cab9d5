"""The 90 -> 92 story on the embedded data: add 2 classes to the shipped 90-class
model without forgetting the 90 old ones, three ways, and compare.

    python examples/expand_90_to_92.py            # ~4 min on 2 CPU cores
    python examples/expand_90_to_92.py --tiny     # a smoke run

Each route starts from `tt.expand_classes` (kernel 1024x90 -> 1024x92, new
columns at zero) and trains for 40 epochs on 50 images of each new class plus 5
exemplars of each old class, class-balanced; one more row shows imprinting the
new columns from 5 images per class, without any training:

  (a) freeze_old   the old columns sit in a frozen block; only the new columns train
  (b) restore      the whole head trains, then tt.restore_old_classes copies the
                   original columns back
  naive            the whole network trains, nothing is restored
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

import tfx_transfer as tt
from tfx_transfer.data import shapes

NEW_CLASSES = shapes.NOVEL_CLASSES


def training_data(new_per_class: int, exemplars_per_old_class: int):
    """New-class images plus a few exemplars of every old class, and balanced class weights."""
    old_x, old_y = shapes.arrays(shapes.BASE_CLASSES, exemplars_per_old_class, split="train")
    new_x, new_y = shapes.arrays(NEW_CLASSES, new_per_class, split="train")
    x = np.concatenate([old_x, new_x]).astype("float32")
    y = np.concatenate([old_y, new_y + len(shapes.BASE_CLASSES)])
    counts = np.bincount(y, minlength=len(shapes.ALL_ORDERED))
    return x, y, tt.data.class_weights(dict(zip(shapes.ALL_ORDERED, counts.tolist())))


def train(model, trainable, data, epochs, learning_rate):
    """Trains only the layers named in `trainable` (all layers when it is None)."""
    for layer in model.layers:
        layer.trainable = trainable is None or layer.name in trainable
    x, y, class_weight = data
    model.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=epochs, batch_size=32, class_weight=class_weight, verbose=0)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description="Expand the base model from 90 to 92 classes.")
    parser.add_argument("--tiny", action="store_true", help="tiny settings for a smoke test")
    args = parser.parse_args()
    new_per_class, exemplars, test_per_class, epochs = (
        (6, 1, 3, 1) if args.tiny else (50, 5, 50, 40)
    )

    keras.utils.set_random_seed(0)
    base = tt.demo.base_model()
    imprint_x, imprint_y = shapes.arrays(NEW_CLASSES, 5, split="validation")
    examples = {name: imprint_x[imprint_y == i] for i, name in enumerate(NEW_CLASSES)}
    test = shapes.arrays(shapes.ALL_ORDERED, test_per_class, split="test")
    data = training_data(new_per_class, exemplars)

    def expanded(init="zeros", freeze_old=False):
        return tt.expand_classes(
            base, new_class_names=NEW_CLASSES, init=init, examples=examples, freeze_old=freeze_old
        )

    routes = {}
    routes["imprint only, no training"] = expanded(init="imprint")
    routes["(a) freeze_old"] = train(expanded(freeze_old=True), {"predictions"}, data, epochs, 3e-3)
    restored = train(expanded(), {"head_dense_1", "predictions"}, data, epochs, 3e-3)
    routes["(b) train head, restore_old_classes"] = tt.restore_old_classes(restored, base)
    routes["naive: train everything"] = train(expanded(), None, data, epochs, 3e-3)

    print(f"\nTest set: {test_per_class} images per class, 90 old + 2 new classes.\n")
    print("| route | old-class accuracy | new-class accuracy | change on old classes |")
    print("|---|---|---|---|")
    for name, model in routes.items():
        report = tt.evaluate(model, test, reference=base)
        if name.startswith("imprint"):
            print(f"| base model (90 classes) | {report.reference_old_accuracy:.3f} | - | - |")
        print(
            f"| {name} | {report.old_accuracy:.3f} | {report.new_accuracy:.3f} "
            f"| {100 * report.old_accuracy_change:+.1f} pts |"
        )


if __name__ == "__main__":
    main()
