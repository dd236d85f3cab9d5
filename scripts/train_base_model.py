"""Reproduces the shipped base model: mobilenet_v3_small + a 1024-unit head,
trained from scratch (no ImageNet weights here) on the 90 base classes of the
embedded shapes data at 64x64 pixels.

    python scripts/train_base_model.py            # ~4 min on 2 CPU cores

It writes tfx_transfer/resources/shapes90_mobilenet_v3_small.keras and prints
the test accuracy (50 images per class) and the time it took.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import keras

import tfx_transfer as tt
from tfx_transfer.data import shapes

OUTPUT = (
    Path(__file__).resolve().parents[1] / "tfx_transfer/resources/shapes90_mobilenet_v3_small.keras"
)


def build(train_batchnorm: bool) -> keras.Model:
    return tt.build_classifier(
        "mobilenet_v3_small",
        len(shapes.BASE_CLASSES),
        weights=None,
        input_shape=(64, 64, 3),
        class_names=shapes.BASE_CLASSES,
        freeze_backbone=False,
        train_batchnorm=train_batchnorm,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()

    start_wall, start_cpu = time.time(), time.process_time()
    keras.utils.set_random_seed(args.seed)
    classes = shapes.BASE_CLASSES
    train = shapes.dataset(
        classes, args.per_class, split="train", batch_size=args.batch_size, seed=args.seed
    )
    validation = shapes.dataset(classes, 20, split="validation", batch_size=256)
    test = shapes.dataset(classes, 50, split="test", batch_size=256)

    # BatchNorm in training mode while the whole network learns from scratch.
    model = build(train_batchnorm=True)
    for layer in model.get_layer("mobilenet_v3_small").layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9  # Keras' 0.999 is too slow for a few thousand steps
    steps = args.epochs * math.ceil(len(classes) * args.per_class / args.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=3e-3, warmup_steps=steps // 20
    )
    model.compile(
        keras.optimizers.AdamW(schedule, weight_decay=1e-4),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train, epochs=args.epochs, validation_data=validation, verbose=2)

    # The shipped model runs its backbone in inference mode, as build_classifier does.
    shipped = build(train_batchnorm=False)
    for layer in model.layers:
        shipped.get_layer(layer.name).set_weights(layer.get_weights())
    correct = total = 0
    for images, labels in test:
        correct += int((shipped.predict_on_batch(images).argmax(axis=1) == labels.numpy()).sum())
        total += int(labels.shape[0])
    accuracy = correct / total
    args.output.parent.mkdir(parents=True, exist_ok=True)
    shipped.save(args.output)
    print(
        f"test accuracy {accuracy:.4f} on {len(classes) * 50} images; "
        f"wall {time.time() - start_wall:.0f} s, CPU {time.process_time() - start_cpu:.0f} s; "
        f"saved {args.output} ({args.output.stat().st_size / 1e6:.1f} MB)"
    )


if __name__ == "__main__":
    main()
