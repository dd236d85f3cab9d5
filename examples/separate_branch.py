"""Two ways to add 2 classes to a trained model, compared on the embedded data:
what each costs (parameters, FLOPs, training time) and how well it learns the new
classes, for a classifier and for a RetinaNet detector.

    python examples/separate_branch.py                     # ~4 min on 2 busy CPU cores
    python examples/separate_branch.py --tiny              # a smoke run (under a minute)
    python examples/separate_branch.py --part classifier   # one half only (or retinanet)

Both routes start from `tt.expand_classes` and keep the old classes' outputs
bit for bit (asserted below, before and after training):

  (a) plain             `expand_classes(model, new_class_names=..., freeze_old=True)`: the
                        classification layer grows by 2 columns (RetinaNet: 2 classes x 9
                        anchors of the class conv); the old columns are frozen and only the
                        new ones train. The hidden layer (RetinaNet: the class subnet's convs)
                        feeds the old classes too, so it stays frozen.
  (b) separate branch   `expand_classes(model, new_class_names=..., separate_branch=True)`: the
                        new classes get their own copy of the hidden layer (RetinaNet: of the
                        class subnet) and their own classification layer; the old head is
                        frozen and the whole new branch trains.

1. Classifier: the shipped 90-class base model (`tt.demo.base_model()`: mobilenet_v3_small,
   a 1024-unit hidden layer), 90 -> 92 classes. Each route trains the same epochs with the
   same optimizer on the same data (new-class images plus a few exemplars of each old
   class, class-balanced), the backbone frozen; old/new accuracy from `tt.evaluate`.
2. RetinaNet: mobilenet_v3_small at 64 px whose backbone is the base classifier's, trained
   (backbone frozen) on synthetic scenes of 8 old classes (not 90, to stay CPU-sized), then
   8 -> 10 classes by each route, trained with the same budget on scenes of all 10 classes.
   The backbone, the feature pyramid (it feeds every class) and the box head stay frozen;
   old/new mAP@.5 from `tt.evaluate` (COCO, pycocotools). The old classes' logits are exact,
   yet their mAP can move a little: decoding gives each anchor box its top class, so a
   box now won by a new class is no longer an old-class detection (often a false positive
   of the base model, whose mAP counts only old-class ground truth).

Parameters and FLOPs (one image, `tfx_transfer.core.cost.model_cost`) are those of the model you
would deploy, `tt.merge_frozen(model)`: a detector in training also holds snapshot copies of
its frozen channels, which are not part of the network. Trainable parameters are the
weights the optimizer actually changes (frozen channels written back after every step are
not counted).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import keras
import numpy as np

import tfx_transfer as tt
from tfx_transfer.core.cost import ModelCost, cost_table, model_cost
from tfx_transfer.data import shapes
from tfx_transfer.heads.frozen_channels import KeepChannels
from tfx_transfer.training import Stage

NEW_CLASSES = list(shapes.NOVEL_CLASSES)
# The detector's old classes: 8 colours, 8 shapes (the new ones are blue_crescent, red_arrow).
DETECTOR_OLD_CLASSES = [
    "red_circle",
    "orange_square",
    "yellow_triangle",
    "green_diamond",
    "cyan_pentagon",
    "blue_star",
    "magenta_cross",
    "white_hexagon",
]
DETECTOR_SIZE = 64
# Anchor sizes (pixels, P3..P7) that fit the objects (boxes of ~20..40 px at 64 px). The
# default, KerasCV's 32..512 px scaled to the input (4..64 px), leaves most objects without
# an anchor of IoU >= 0.5 on the coarse 2x2 / 1x1 levels; the base detector then reached
# mAP@.5 ~0.2 after 16 epochs here, against ~0.98 after 4 with these sizes.
ANCHOR_SIZES = (16, 24, 32, 48, 64)
PLAIN, BRANCH = "(a) plain expansion", "(b) separate branch"
HEADER = (
    "| model | route | parameters | +% vs plain | FLOPs (1 image) | +% vs plain "
    "| trainable parameters | new-class quality | old-class quality | training (s) |"
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of a run; `tiny()` is for smoke tests."""

    # classifier
    new_per_class: int = 50
    exemplars_per_old_class: int = 5
    test_per_class: int = 50
    epochs: int = 40
    learning_rate: float = 3e-3
    # RetinaNet
    base_scenes: int = 400
    base_epochs: int = 8
    expand_scenes: int = 320
    detector_epochs: int = 12
    test_scenes: int = 300
    detector_learning_rate: float = 1e-3

    @classmethod
    def tiny(cls) -> Settings:
        return cls(
            new_per_class=6,
            exemplars_per_old_class=1,
            test_per_class=2,
            epochs=1,
            base_scenes=16,
            base_epochs=1,
            expand_scenes=16,
            detector_epochs=1,
            test_scenes=8,
        )


@dataclasses.dataclass
class Row:
    kind: str
    route: str
    cost: ModelCost
    trainable: int | None
    new_quality: float | None
    old_quality: float
    seconds: float | None


# --- shared ---------------------------------------------------------------------------------


def deployed_cost(model: keras.Model) -> ModelCost:
    """Parameters and FLOPs of the model as exported (frozen blocks folded, snapshots dropped)."""
    return model_cost(tt.merge_frozen(model))


def trained_parameters(model: keras.Model) -> int:
    """Weights the optimizer changes: trainable variables, less the frozen channels that a
    `KeepChannels` constraint writes back after every step (detectors' frozen classes)."""
    total = 0
    for variable in {id(v): v for v in model.trainable_weights}.values():
        size = int(np.prod(variable.shape))
        constraint = getattr(variable, "constraint", None)
        if isinstance(constraint, KeepChannels):
            size = size // len(constraint.mask) * (len(constraint.mask) - sum(constraint.mask))
        total += size
    return total


def timed_fit(model: keras.Model, *args, **kwargs) -> float:
    keras.utils.set_random_seed(0)  # the same batches for every route
    started = time.perf_counter()
    model.fit(*args, verbose=0, **kwargs)
    return time.perf_counter() - started


# --- 1. classifier --------------------------------------------------------------------------


def classifier_rows(settings: Settings) -> list[Row]:
    base = tt.demo.base_model()
    old_count = len(shapes.BASE_CLASSES)
    old_x, old_y = shapes.arrays(shapes.BASE_CLASSES, settings.exemplars_per_old_class)
    new_x, new_y = shapes.arrays(NEW_CLASSES, settings.new_per_class)
    x = np.concatenate([old_x, new_x]).astype("float32")
    y = np.concatenate([old_y, new_y + old_count])
    counts = np.bincount(y, minlength=len(shapes.ALL_ORDERED))
    class_weight = tt.data.class_weights(dict(zip(shapes.ALL_ORDERED, counts.tolist())))
    test_x, test_y = shapes.arrays(shapes.ALL_ORDERED, settings.test_per_class, split="test")
    test_x = test_x.astype("float32")
    check_x = shapes.arrays(shapes.ALL_ORDERED, 1, split="validation")[0].astype("float32")
    base_logits = keras.ops.convert_to_numpy(base(check_x, training=False))

    def assert_old_exact(model, when):
        logits = keras.ops.convert_to_numpy(model(check_x, training=False))
        assert np.array_equal(logits[:, :old_count], base_logits), (
            f"classifier {model.name}: old-class logits differ from the base model's {when}"
        )

    routes = {
        PLAIN: (
            tt.expand_classes(base, new_class_names=NEW_CLASSES, freeze_old=True),
            "classifier",
        ),
        BRANCH: (
            tt.expand_classes(base, new_class_names=NEW_CLASSES, separate_branch=True),
            "head",
        ),
    }
    rows = []
    for route, (model, part) in routes.items():
        assert_old_exact(model, "before training")
        # (a) only the classification layer (its new block); (b) the head: the old hidden and
        # classification layers are frozen column blocks, so only the new branch trains.
        tt.training.set_trainable(model, part)
        model.compile(
            keras.optimizers.Adam(settings.learning_rate),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        seconds = timed_fit(
            model, x, y, epochs=settings.epochs, batch_size=32, class_weight=class_weight
        )
        assert_old_exact(model, "after training")
        report = tt.evaluate(model, (test_x, test_y), reference=base)
        rows.append(
            Row(
                "classifier, 90 -> 92",
                route,
                deployed_cost(model),
                trained_parameters(model),
                report.new_accuracy,
                report.old_accuracy,
                seconds,
            )
        )
    base_row = Row(
        "classifier, 90 classes", "base", model_cost(base), None, None,
        report.reference_old_accuracy, None,
    )  # fmt: skip
    return [base_row, *rows]


# --- 2. RetinaNet ---------------------------------------------------------------------------


def scenes(classes, count: int, seed: int, test_images: int = 0):
    return tt.data.synthetic_detection(
        count,
        image_size=DETECTOR_SIZE,
        classes=classes,
        max_objects=2,
        test_images=test_images,
        batch_size=16,
        seed=seed,
        object_size=(0.35, 0.6),
    )


def base_detector(settings: Settings) -> tuple[keras.Model, float]:
    """A RetinaNet on the base classifier's backbone, its FPN and heads trained on the old classes."""
    backbone = tt.build_backbone(
        "mobilenet_v3_small", weights=None, input_shape=(DETECTOR_SIZE, DETECTOR_SIZE, 3)
    )
    backbone.set_weights(tt.demo.base_model().get_layer("mobilenet_v3_small").get_weights())
    detector = tt.build_detector(
        "retinanet",
        backbone,
        len(DETECTOR_OLD_CLASSES),
        class_names=DETECTOR_OLD_CLASSES,
        anchor_sizes=ANCHOR_SIZES,
    )
    data = scenes(DETECTOR_OLD_CLASSES, settings.base_scenes, seed=0)
    started = time.perf_counter()
    stage = Stage(
        train="head", epochs=settings.base_epochs, learning_rate=settings.detector_learning_rate
    )
    detector, _ = tt.fine_tune(detector, data, stages=[stage], verbose=0)
    return detector, time.perf_counter() - started


def freeze_for_route(detector: keras.Model, route: str) -> None:
    """(a) only the class conv trains (its old channels are held by constraints; the class
    subnet's convs feed the old classes, so they stay frozen); (b) only the new class branch:
    the feature pyramid (it feeds every class), the box head and the old branch are frozen.
    (`expand_classes` already holds the old branch by constraints; making it non-trainable
    too spares the optimizer its gradients.)"""
    if route == PLAIN:
        tt.training.set_trainable(detector, "classifier")
        return
    tt.training.set_trainable(detector, "head")
    detector.feature_pyramid.trainable = False
    detector.box_head.trainable = False
    for branch in detector.classification_head.branches[:-1]:
        branch.trainable = False


def retinanet_rows(settings: Settings) -> list[Row]:
    keras.utils.set_random_seed(0)
    base, base_seconds = base_detector(settings)
    old_count = len(DETECTOR_OLD_CLASSES)
    data = scenes(
        [*DETECTOR_OLD_CLASSES, *NEW_CLASSES], settings.expand_scenes, seed=1,
        test_images=settings.test_scenes,
    )  # fmt: skip
    images = next(iter(data.test))["images"]
    base_outputs = {k: keras.ops.convert_to_numpy(v) for k, v in base(images).items()}

    def assert_old_exact(detector, when):
        outputs = detector(images, training=False)
        classes = keras.ops.convert_to_numpy(outputs["classification"])
        assert np.array_equal(classes[..., :old_count], base_outputs["classification"]), (
            f"RetinaNet {detector.name}: old-class logits differ from the base model's {when}"
        )
        assert np.array_equal(keras.ops.convert_to_numpy(outputs["box"]), base_outputs["box"])

    routes = {
        PLAIN: tt.expand_classes(base, new_class_names=NEW_CLASSES, freeze_old=True),
        BRANCH: tt.expand_classes(base, new_class_names=NEW_CLASSES, separate_branch=True),
    }
    rows = []
    for route, detector in routes.items():
        assert_old_exact(detector, "before training")
        freeze_for_route(detector, route)
        detector.compile(
            optimizer=keras.optimizers.Adam(settings.detector_learning_rate, global_clipnorm=10.0)
        )
        seconds = timed_fit(detector, data.train, epochs=settings.detector_epochs)
        assert_old_exact(detector, "after training")
        report = tt.evaluate(detector, data, reference=base)
        rows.append(
            Row(
                f"RetinaNet, {old_count} -> {old_count + 2}",
                route,
                deployed_cost(detector),
                trained_parameters(detector),
                report.new_map50,
                report.old_map50,
                seconds,
            )
        )
    base_row = Row(
        f"RetinaNet, {old_count} classes", "base", model_cost(base), None, None,
        report.reference_old_map50, base_seconds,
    )  # fmt: skip
    return [base_row, *rows]


# --- the table ------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    lines = [HEADER, "|" + "---|" * (HEADER.count(" | ") + 1)]
    plain = {}
    for row in rows:
        kind = row.kind.split(",")[0]
        if row.route == PLAIN:
            plain[kind] = row.cost
        reference = plain.get(kind) if row.route == BRANCH else None
        change = row.cost.relative_to(reference) if reference else None
        metric = "accuracy" if kind == "classifier" else "mAP@.5"
        cells = [
            row.kind,
            row.route,
            f"{row.cost.parameters:,}",
            _percent(change, "parameters", row.route),
            f"{row.cost.flops / 1e6:,.1f} M",
            _percent(change, "flops", row.route),
            "-" if row.trainable is None else f"{row.trainable:,}",
            "-" if row.new_quality is None else f"{row.new_quality:.3f} {metric}",
            f"{row.old_quality:.3f} {metric}",
            "-" if row.seconds is None else f"{row.seconds:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _percent(change, key: str, route: str) -> str:
    if change is not None:
        return f"{100 * change[key]:+.2f}%"
    return "(reference)" if route == PLAIN else "-"


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line]
        model = names[0] if names else model
    except OSError:
        pass
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{os.cpu_count()} CPUs ({model}), load average {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description="Plain expansion vs a separate class branch.")
    parser.add_argument("--tiny", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument(
        "--part", choices=("all", "classifier", "retinanet"), default="all", help="what to run"
    )
    args = parser.parse_args()
    settings = Settings.tiny() if args.tiny else Settings()
    started = time.perf_counter()
    rows = []
    if args.part in ("all", "classifier"):
        rows += classifier_rows(settings)
    if args.part in ("all", "retinanet"):
        rows += retinanet_rows(settings)

    print("\nCost relative to each model's base (tfx_transfer.core.cost.cost_table):\n")
    for kind in dict.fromkeys(row.kind.split(",")[0] for row in rows):
        costs = {f"{r.kind} {r.route}": r.cost for r in rows if r.kind.startswith(kind)}
        print(cost_table(costs), end="\n\n")
    print(table(rows))
    print(
        f"\nClassifier: {settings.epochs} epochs on {settings.new_per_class} images per new "
        f"class + {settings.exemplars_per_old_class} per old class, tested on "
        f"{settings.test_per_class} images per class. RetinaNet ({DETECTOR_SIZE} px, "
        f"{len(DETECTOR_OLD_CLASSES)} old classes, not 90): base trained "
        f"{settings.base_epochs} epochs on {settings.base_scenes} scenes (its 'training (s)'), "
        f"each route {settings.detector_epochs} epochs on {settings.expand_scenes} scenes of "
        f"all classes, tested on {settings.test_scenes} scenes. Old-class outputs equal the "
        "base model's bit for bit before and after training (asserted)."
    )
    print(f"Machine: {machine()}; total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
