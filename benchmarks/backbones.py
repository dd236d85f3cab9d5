"""Backbone efficiency: how close the backbones come to the machine's matmul peak.

1. The machine's dense float32 matmul peak: `tf.matmul` of 2048x2048 and 4096x4096
   matrices in a `tf.function` (2 n^3 FLOPs each). One matmul call follows every timed
   model call, so that the peak and the models are sampled in the same moments of the
   machine's load; the best matmul call of the whole run is the peak.
2. For resnet50, vgg16, inception_v3 (299 px) and mobilenet_v2 (224 px), batch 8,
   random weights (timing does not depend on them):
   - forward: `model(x, training=False)` in a `tf.function`, after two warm-up calls,
     best timed call; achieved GFLOP/s = images/s x FLOPs per image from `tt.model_cost`
     (the TF profiler's count: a multiply-add counts 2 FLOPs; checked here against the
     convolutions' and Dense layers' multiply-adds counted from their shapes);
   - training step: the backbone with the default head (`tt.build_classifier`, 10
     classes), everything trainable (BatchNorm frozen, as `tt.fine_tune` does), Adam,
     `train_on_batch` after a warm-up step, best of 2 timed steps; its FLOPs are an
     ESTIMATE, 3x the classifier's forward FLOPs (forward + gradients of activations
     + gradients of weights).
   Efficiency = achieved GFLOP/s / matmul peak. Goal: >= 0.8 for the large backbones
   (resnet50, vgg16, inception_v3) forward; the last line is their minimum.

Timings are best-of because other processes may share the cores: the best sample is
the least disturbed one, on both sides of the ratio. The script reports how much CPU
other processes used while it ran.

    python benchmarks/backbones.py            # about 1.5 minutes on 2 quiet cores
    python benchmarks/backbones.py --quick    # smoke run: resnet50 only, fewer samples
"""

from __future__ import annotations

import argparse
import os
import time

import keras
import numpy as np
import tensorflow as tf

import tfx_transfer as tt

BATCH = 8
CLASSES = 10
BACKBONES = {"resnet50": 224, "vgg16": 224, "inception_v3": 299, "mobilenet_v2": 224}
LARGE = ("resnet50", "vgg16", "inception_v3")
TRAIN_FLOPS_FACTOR = 3  # forward + backward (activation and weight gradients): an estimate
HEADER = (
    "| backbone | FLOPs/image | forward images/s | forward GFLOP/s | efficiency "
    "| train step images/s | train efficiency |"
)


class Settings:
    def __init__(self, quick: bool):
        self.backbones = {"resnet50": 224} if quick else BACKBONES
        self.forward_min_samples = 2 if quick else 3
        self.forward_budget = 2.0 if quick else 8.0  # seconds: forward calls and the probes
        self.forward_max_samples = 10 if quick else 30
        self.train_steps = 1 if quick else 2


class MachineLoad:
    """CPU time used by other processes while the script runs, from /proc/stat."""

    def __init__(self):
        self.started = time.perf_counter()
        self.busy, self.own = self._busy(), self._own()

    @staticmethod
    def _busy() -> float:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        times = os.times()
        return times.user + times.system + times.children_user + times.children_system

    def others_cores(self) -> float:
        """Average number of cores other processes kept busy since the start."""
        elapsed = time.perf_counter() - self.started
        others = (self._busy() - self.busy) - (self._own() - self.own)
        return max(others, 0.0) / elapsed


class MatmulProbe:
    """Times `tf.matmul` calls (2 n^3 FLOPs), cycling through the matrix sizes."""

    def __init__(self, sizes: tuple[int, ...] = (2048, 4096)):
        multiply = tf.function(tf.matmul)
        self.calls = []
        for n in sizes:
            a = tf.random.stateless_normal((n, n), seed=[0, 1])
            b = tf.random.stateless_normal((n, n), seed=[0, 2])
            multiply(a, b).numpy()  # trace and warm up
            self.calls.append((n, multiply, a, b))
        self.count = 0

    def sample(self) -> float:
        """GFLOP/s of one call."""
        n, multiply, a, b = self.calls[self.count % len(self.calls)]
        self.count += 1
        started = time.perf_counter()
        multiply(a, b).numpy()
        return 2 * n**3 / (time.perf_counter() - started) / 1e9


def multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of the convolutions and Dense layers, counted from their shapes."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, height, width, channels = layer.output.shape
            kh, kw = layer.kernel_size
            total += height * width * channels * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            _, height, width, channels = layer.output.shape
            kh, kw = layer.kernel_size
            total += height * width * channels * kh * kw * layer.kernel.shape[2]
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return int(total)


def forward_images_per_second(
    model: keras.Model, size: int, settings: Settings, probe: MatmulProbe, peaks: list[float]
) -> float:
    """Best images/s of a forward call; a matmul probe call follows each (into `peaks`)."""
    x = tf.random.stateless_uniform((BATCH, size, size, 3), seed=[1, 2], maxval=255.0)
    forward = tf.function(lambda images: model(images, training=False))
    for _ in range(2):  # trace, then one more warm-up call
        forward(x).numpy()
    best, samples, started = np.inf, 0, time.perf_counter()
    while samples < settings.forward_max_samples and (
        samples < settings.forward_min_samples
        or time.perf_counter() - started < settings.forward_budget
    ):
        call_started = time.perf_counter()
        forward(x).numpy()
        best = min(best, time.perf_counter() - call_started)
        peaks.append(probe.sample())
        samples += 1
    return BATCH / best


def train_images_per_second(
    name: str, size: int, settings: Settings, probe: MatmulProbe, peaks: list[float]
) -> tuple[float, int]:
    """(best images/s of a whole-network training step, the classifier's forward FLOPs);
    a matmul probe call follows each step (into `peaks`)."""
    model = tt.build_classifier(name, CLASSES, weights=None, input_shape=(size, size, 3))
    flops = tt.model_cost(model).flops
    tt.training.set_trainable(model, "all")
    model.compile(
        keras.optimizers.Adam(1e-4),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,  # what "auto" resolves to on a CPU
    )
    x = tf.random.stateless_uniform((BATCH, size, size, 3), seed=[3, 4], maxval=255.0)
    y = tf.range(BATCH) % CLASSES
    model.train_on_batch(x, y)  # trace and warm up
    best = np.inf
    for _ in range(settings.train_steps):
        started = time.perf_counter()
        model.train_on_batch(x, y)
        best = min(best, time.perf_counter() - started)
        peaks.append(probe.sample())
    return BATCH / best, flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one backbone")
    settings = Settings(parser.parse_args().quick)
    load = MachineLoad()
    started = time.perf_counter()
    probe = MatmulProbe()
    rows = {}
    for name, size in settings.backbones.items():
        keras.utils.set_random_seed(0)
        backbone = tt.build_backbone(name, weights=None, input_shape=(size, size, 3))
        cost = tt.model_cost(backbone)
        counted = 2 * multiply_adds(backbone)
        peaks = []
        forward = forward_images_per_second(backbone, size, settings, probe, peaks)
        del backbone
        train, train_flops = train_images_per_second(name, size, settings, probe, peaks)
        keras.backend.clear_session()
        rows[name] = {
            "size": size,
            "flops": cost.flops,
            "counted": counted,
            "forward": forward,
            "train": train,
            "train_flops": train_flops,
            "peaks": peaks,
        }
    peak = max(max(row["peaks"]) for row in rows.values())

    print(
        "| backbone | px | tt.model_cost FLOPs/image | 2 x conv/Dense multiply-adds | ratio "
        "| matmul GFLOP/s alongside: best, median |"
    )
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['size']} | {row['flops'] / 1e9:.3f} G | {row['counted'] / 1e9:.3f} G "
            f"| {row['flops'] / row['counted']:.3f} | {max(row['peaks']):.0f}, "
            f"{np.median(row['peaks']):.0f} ({len(row['peaks'])} calls) |"
        )
    print()
    print(HEADER)
    print("|" + "---|" * (HEADER.count(" | ") + 1))
    efficiency = {}
    for name, row in rows.items():
        achieved = row["forward"] * row["flops"] / 1e9
        efficiency[name] = achieved / peak
        train_achieved = row["train"] * TRAIN_FLOPS_FACTOR * row["train_flops"] / 1e9
        print(
            f"| {name} ({row['size']} px) | {row['flops'] / 1e9:.2f} G | {row['forward']:.1f} "
            f"| {achieved:.0f} | {efficiency[name]:.2f} | {row['train']:.1f} "
            f"| {train_achieved / peak:.2f} (est.) |"
        )
    print()
    print(
        f"batch {BATCH}, float32; matmul peak (best call of the run) {peak:.0f} GFLOP/s; "
        f"train efficiency assumes {TRAIN_FLOPS_FACTOR}x forward FLOPs per step (estimate)"
    )
    print(
        f"other processes kept {load.others_cores():.2f} of {os.cpu_count()} cores busy on "
        f"average; runtime {time.perf_counter() - started:.0f} s"
    )
    measured = [name for name in LARGE if name in efficiency]
    worst = min(efficiency[name] for name in measured)
    print(f"min forward efficiency of {', '.join(measured)}: {worst:.2f} (goal >= 0.8)")
    print(f"ratio: {worst:.2f}")


if __name__ == "__main__":
    main()
