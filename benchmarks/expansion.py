"""Class expansion vs model building: what does `tt.expand_classes` cost?

For three models with 90 classes, measures side by side in one process the wall time of
building the model and of expanding it to 92 classes with `tt.expand_classes`, plain and
with `freeze_old=True`:

- classifiers with a 1024x90 head: the shipped base model (`tt.demo.base_model()`, loaded
  from its .keras file) and the same architecture built with
  `tt.build_classifier("mobilenet_v3_small", 90, weights=None, input_shape=(64, 64, 3))`;
- a RetinaNet, `tt.build_detector("retinanet", "resnet50", 90, weights=None)` at 512 px;
- a Faster R-CNN, `tt.build_detector("faster_rcnn", "resnet50", 90, weights=None)` at
  512 px (box classifier 1024x91, background first).

Each model is built and expanded once untimed (first-call costs: imports, layer classes'
first use), then REPEATS times alternating build / expand / expand(freeze_old) / copy; the
table holds each column's median. "copy s" is a weight-preserving copy of the unchanged
model (a clone from its config plus `set_weights`, as `tt.expand_classes` makes of every
layer it does not change): the floor of any expansion that returns a new model and leaves
the original untouched. Goal: expansion well under one model build; the last line is the
largest expand/build ratio.

`weights=None` throughout (no internet here); loading ImageNet weights would make a real
build slower by the time to read the weights file, and leave the expansion as it is.

    python benchmarks/expansion.py            # about 1.5 min on 2 busy cores
    python benchmarks/expansion.py --quick    # smoke run: small inputs, 1 repetition
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

import keras

import tfx_transfer as tt
from tfx_transfer.detection import rebuild_detector
from tfx_transfer.surgery.rebuild import clone_with_weights

REPEATS = 5
GOAL = 0.5  # "well under one model build"
NEW_CLASSES = ["new_class_a", "new_class_b"]  # 90 -> 92


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    gc.collect()  # collect the previous runs' models outside the timings
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def copy_classifier(model: keras.Model) -> keras.Model:
    return clone_with_weights(model, {})


def copy_detector(detector: keras.Model) -> keras.Model:
    copy = rebuild_detector(detector, class_metadata=tt.class_info(detector))
    copy.set_weights(detector.get_weights())
    return copy


def models(quick: bool) -> list[tuple[str, Callable[[], keras.Model], Callable]]:
    """(name, builder, copier) for each model measured."""
    side, detector_side = (32, 128) if quick else (64, 512)

    def classifier():
        return tt.build_classifier(
            "mobilenet_v3_small", 90, weights=None, input_shape=(side, side, 3)
        )

    def detector(arch: str):
        return lambda: tt.build_detector(
            arch, "resnet50", 90, weights=None, input_shape=(detector_side, detector_side, 3)
        )

    return [
        ("shipped base model, loaded (mobilenet_v3_small 64 px, 1024x90)", tt.demo.base_model, copy_classifier),
        (f"mobilenet_v3_small classifier {side} px, 1024x90", classifier, copy_classifier),
        (f"RetinaNet resnet50 {detector_side} px", detector("retinanet"), copy_detector),
        (f"Faster R-CNN resnet50 {detector_side} px, 1024x91", detector("faster_rcnn"), copy_detector),
    ]  # fmt: skip


def measure(build, copy, repeats: int) -> dict[str, float]:
    """Median seconds of building, expanding (plain and freeze_old) and copying."""

    def operations(model):
        return {
            "expand": lambda: tt.expand_classes(model, new_class_names=NEW_CLASSES),
            "expand, freeze_old": lambda: tt.expand_classes(
                model, new_class_names=NEW_CLASSES, freeze_old=True
            ),
            "copy": lambda: copy(model),
        }

    model = build()  # untimed first round
    for fn in operations(model).values():
        fn()
    runs = {"build": [], "expand": [], "expand, freeze_old": [], "copy": []}
    for _ in range(repeats):
        del model
        seconds, model = timed(build)
        runs["build"].append(seconds)
        for key, fn in operations(model).items():
            seconds, result = timed(fn)
            runs[key].append(seconds)
            del result
    expanded = tt.expand_classes(model, new_class_names=NEW_CLASSES)
    assert tt.class_info(expanded).num_classes == 92, tt.class_info(expanded)
    return {key: statistics.median(values) for key, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small inputs, 1 repeat")
    args = parser.parse_args()
    repeats = 1 if args.quick else REPEATS
    started = time.perf_counter()
    rows = []
    for name, build, copy in models(args.quick):
        keras.backend.clear_session()
        times = measure(build, copy, repeats)
        for variant in ("expand", "expand, freeze_old"):
            label = name + (", freeze_old=True" if variant != "expand" else "")
            rows.append((label, times["build"], times[variant], times["copy"]))

    print(f"\nmedian of {repeats} run(s) after an untimed one; 90 -> 92 classes\n")
    print("| model | build s | expand s | expand/build | copy s |")
    print("|---|---|---|---|---|")
    for label, build_s, expand_s, copy_s in rows:
        print(
            f"| {label} | {build_s:.2f} | {expand_s:.2f} | {expand_s / build_s:.2f} | {copy_s:.2f} |"
        )
    worst = max(rows, key=lambda row: row[2] / row[1])
    ratio = worst[2] / worst[1]
    verdict = "met" if ratio <= GOAL else "not met"
    print(f"\nlargest expand/build: {worst[0]} (goal: well under 1, <= {GOAL}: {verdict})")
    print(f"wall time {time.perf_counter() - started:.0f} s")
    print(f"ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
