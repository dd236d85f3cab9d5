"""tf.distribute: MirroredStrategy over two logical CPU devices vs one device.

Measures, side by side in one process, the training images/s of `tt.fine_tune` on the same
model, data and global batch, once without a strategy and once with
`tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])` (the model built inside its scope
by a builder function): mobilenet_v2 at 96x96 px with the 1024-unit head and 90 classes,
everything trained (`Stage(train="all")`, Adam), global batch 32 (16 per replica), random
images. Each run's first epoch (tracing, and for the mirrored run the replicas' set-up) is
a warm-up; images/s come from the epochs after it, timed by a callback. The two sides
alternate ROUNDS times and each keeps its best run. The last line is
mirrored / one-device images/s.

This is an honest figure, not a speed-up: the two logical devices are carved out of the
same CPU and share its 2 physical cores (and TensorFlow's thread pools), so the mirrored
run does the same arithmetic as the one-device run, split into two half batches, plus the
per-step work of the strategy (splitting the batch, running two replicas, all-reducing
every gradient); expect a ratio at or below 1. What it does show is that the
MirroredStrategy path (the one `strategy="auto"` takes over several GPUs) runs end to end
and what its overhead costs. On N GPUs each replica has a device of its own: the step
time stays about that of one GPU on its 1/N of the batch while the gradients are
all-reduced over NVLink/PCIe (NCCL), so images/s grow almost N-fold when the per-GPU batch
is large enough to keep each GPU busy; NVIDIA's ResNet-50 figures below scale 7.6-7.7x on
8 V100s.

No GPU is available either, so the script also prints a projection, clearly labelled as
one: ResNet50 training images/s at 224 px on one V100 (SXM2) for float32, mixed_float16 and
mixed_float16 + XLA, from the forward FLOPs `tt.model_cost` counts (a multiply-add is 2),
three times that per trained image (forward, and the backward pass's two products per
layer), the V100's peak and an assumed utilisation, next to NVIDIA DeepLearningExamples'
published figures (ResNet-50 v1.5, TensorFlow 1 with AMP, DGX-1 with one V100 16 GB,
tensorflow-19.05-py3 container; TensorFlow/Classification/RN50v1.5/README.md).

    python benchmarks/distribution.py            # about 2 min on 2 busy cores
    python benchmarks/distribution.py --quick    # smoke run: 64 px, short epochs, 1 round
"""

from __future__ import annotations

import argparse
import time

import tensorflow as tf

# Two logical CPU devices; this must run before TensorFlow initialises its devices.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfx_transfer as tt  # noqa: E402
from tfx_transfer.training import Stage  # noqa: E402

BATCH = 32  # global: 16 per replica
ROUNDS = 2

# ResNet50 training on one V100: (precision, peak TFLOP/s, assumed utilisation, published).
# V100 SXM2 peaks: 15.7 TFLOP/s float32, 125 TFLOP/s float16 on tensor cores. Utilisation:
# cuDNN's float32 convolutions keep the SIMT units well fed (about half of peak end to end);
# with float16 the convolutions get ~8x faster while BatchNorm, ReLU, the residual adds and
# the optimizer stay memory-bound, so only a small share of the tensor-core peak is reached,
# more once XLA fuses those elementwise ops. These are round values from what V100 ResNet-50
# runs typically reach, chosen knowing the published column: their agreement with it is not a
# validation. The projection is for scaling the figure (other models' FLOPs, image sizes).
# Published: NVIDIA DeepLearningExamples, TensorFlow/Classification/RN50v1.5/README.md,
# DGX-1, 1 GPU: FP32 364.9, mixed precision 802.1, mixed precision + XLA 1177.9 img/s.
V100 = [
    ("float32", 15.7, 0.55, 364.9),
    ("mixed_float16", 125.0, 0.16, 802.1),
    ("mixed_float16 + XLA", 125.0, 0.24, 1177.9),
]
TRAINING_FLOPS_PER_FORWARD = 3


class EpochTimes(keras.callbacks.Callback):
    """Wall-clock time at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.ends: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.perf_counter())


def training_images_per_second(
    data: tf.data.Dataset, size: int, epochs: int, strategy=None
) -> float:
    """Images/s of `tt.fine_tune` over `epochs` epochs after a warm-up epoch."""

    def builder():
        keras.utils.set_random_seed(0)
        return tt.build_classifier("mobilenet_v2", 90, weights=None, input_shape=(size, size, 3))

    timer = EpochTimes()
    tt.fine_tune(
        builder,
        data,
        stages=[Stage(train="all", epochs=1 + epochs)],
        strategy=strategy,
        callbacks=[timer],
        verbose=0,
    )
    images = int(data.cardinality()) * BATCH * epochs
    return images / (timer.ends[-1] - timer.ends[0])


def forward_flops(model: keras.Model) -> int:
    return tt.model_cost(model).flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small and short")
    args = parser.parse_args()
    size, steps, epochs, rounds = (64, 4, 1, 1) if args.quick else (96, 20, 3, ROUNDS)
    started = time.perf_counter()

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (steps * BATCH, size, size, 3)).astype("float32")
    labels = rng.integers(0, 90, len(images))
    data = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .batch(BATCH, drop_remainder=True)
        .cache()
    )
    # One strategy for every run: a second MirroredStrategy over the same devices in one
    # process would reuse its collective instance keys.
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    one_device, two_replicas = [], []
    for _ in range(rounds):
        one_device.append(training_images_per_second(data, size, epochs))
        two_replicas.append(training_images_per_second(data, size, epochs, mirrored))
    one, two = max(one_device), max(two_replicas)

    # What this CPU achieves, in the units of the projection below.
    cpu_flops = forward_flops(
        tt.build_classifier("mobilenet_v2", 90, weights=None, input_shape=(size, size, 3))
    )
    cpu_tflops = one * TRAINING_FLOPS_PER_FORWARD * cpu_flops / 1e12
    resnet_flops = forward_flops(keras.applications.ResNet50(weights=None))
    per_image = TRAINING_FLOPS_PER_FORWARD * resnet_flops

    print(
        f"\nmobilenet_v2 {size} px, 1024-unit head, 90 classes, train='all', global batch "
        f"{BATCH}, {steps} steps/epoch, {epochs} timed epoch(s) after a warm-up epoch, "
        f"best of {rounds} alternating run(s); 2 logical CPU devices on {_cores()} cores\n"
    )
    print("| run | replicas | images/s |")
    print("|---|---|---|")
    print(f"| one device (no strategy) | 1 | {one:.1f} |")
    print(f"| MirroredStrategy(['/cpu:0', '/cpu:1']) | 2 | {two:.1f} |")
    print(
        f"\nall runs, images/s: one device {_listed(one_device)}; mirrored {_listed(two_replicas)}"
    )
    print(
        f"this CPU, one device: {cpu_flops / 1e9:.3f} GFLOPs forward per image (tt.model_cost) "
        f"x {TRAINING_FLOPS_PER_FORWARD} x {one:.1f} images/s = {cpu_tflops * 1e3:.1f} GFLOP/s"
    )

    print(
        "\nGPU PROJECTION (no GPU here; computed, not measured): ResNet50 (keras.applications, "
        f"1000 classes) at 224 px, {resnet_flops / 1e9:.2f} GFLOPs forward per image "
        f"(tt.model_cost), x {TRAINING_FLOPS_PER_FORWARD} = {per_image / 1e9:.1f} GFLOPs per "
        "trained image; one V100 SXM2; projected images/s = peak x utilisation / FLOPs per "
        "trained image\n"
    )
    print(
        "| precision | peak TFLOP/s | assumed utilisation | projected images/s | "
        "published images/s (NVIDIA DLE, RN50 v1.5, 1x V100 16 GB) |"
    )
    print("|---|---|---|---|---|")
    for precision, peak, utilisation, published in V100:
        projected = peak * 1e12 * utilisation / per_image
        print(
            f"| {precision} | {peak:.1f} | {utilisation:.0%} | {projected:.0f} | {published:.1f} |"
        )
    print(
        "\n(published: tensorflow-19.05-py3 container, TF1 graph with automatic mixed "
        "precision, ResNet-50 v1.5, which NVIDIA puts about 5% slower than v1, the Keras model "
        "counted here. 8 GPUs: 2778.5 FP32 and 6209.9 mixed img/s, 7.61x and 7.74x.)"
    )
    print(f"wall time {time.perf_counter() - started:.0f} s")
    print(f"ratio: {two / one:.3f}")


def _listed(values: list[float]) -> str:
    return ", ".join(f"{value:.1f}" for value in values)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
