"""Peak host memory (RSS) of fine-tuning the whole network.

For resnet50, vgg16, inception_v3 (299 px) and mobilenet_v2 (224 px): a classifier
(`tt.build_classifier`, default 1024-unit head, 10 classes, random weights) fine-tuned
with `tt.fine_tune(model, data, stages=[Stage(train="all", epochs=1)])` on 2 batches
of 8 random images (BatchNorm frozen, as `tt.fine_tune` does by default; Adam). Each
model runs in its own subprocess so that the peaks do not mix:

- baseline: the process's RSS right after `import tensorflow` and `import tfx_transfer`;
- peak: `resource.getrusage(RUSAGE_SELF).ru_maxrss` (KiB on Linux) after fine-tuning.

For comparison, the table gives 16 bytes per parameter: float32 weights, gradients and
Adam's two slots; the rest of the peak above the baseline is activations kept for the
backward pass, workspace of the kernels, traced graphs and the allocator's slack.
The last line is the peak RSS of vgg16 / the peak RSS of mobilenet_v2 (no goal).

    python benchmarks/memory.py            # about 1 minute on 2 quiet cores
    python benchmarks/memory.py --quick    # smoke run: vgg16 and mobilenet_v2 at 96 px
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

BATCH = 8
STEPS = 2
CLASSES = 10
MODELS = {"resnet50": 224, "vgg16": 224, "inception_v3": 299, "mobilenet_v2": 224}
QUICK_MODELS = {"vgg16": 96, "mobilenet_v2": 96}
HEADER = (
    "| model | parameters | peak RSS MiB | above baseline MiB "
    "| 16 B x parameters MiB | fine-tuning s |"
)
MIB = 1024 * 1024


def current_rss() -> int:
    """Resident set size of this process now, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(name: str, size: int) -> None:
    """Fine-tunes one model and prints its memory figures as JSON (the last line)."""
    import resource

    import tensorflow as tf

    after_tensorflow = current_rss()

    import tfx_transfer as tt
    from tfx_transfer.training import Stage

    baseline = current_rss()
    model = tt.build_classifier(name, CLASSES, weights=None, input_shape=(size, size, 3))

    def example(index):
        image = tf.random.stateless_uniform((size, size, 3), seed=[0, index], maxval=255.0)
        return image, index % CLASSES

    data = tf.data.Dataset.range(BATCH * STEPS).map(example).batch(BATCH)
    started = time.perf_counter()
    tt.fine_tune(model, data, stages=[Stage(train="all", epochs=1)], verbose=0)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "parameters": int(model.count_params()),
                "tensorflow": after_tensorflow,
                "baseline": baseline,
                "peak": peak,
                "seconds": seconds,
            }
        )
    )


def measure(name: str, size: int) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", name, str(size)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def others_cores(since: tuple[float, float, float]) -> float:
    """Average number of cores other processes kept busy since `since`."""
    started, busy, own = since
    now = machine_times()
    return max((now[1] - busy) - (now[2] - own), 0.0) / (now[0] - started)


def machine_times() -> tuple[float, float, float]:
    """(wall clock, busy CPU seconds of the machine, CPU seconds of us and our children)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    times = os.times()
    own = times.user + times.system + times.children_user + times.children_system
    return time.perf_counter(), busy, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: two models at 96 px")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    since = machine_times()
    models = QUICK_MODELS if args.quick else MODELS
    results = {name: measure(name, size) for name, size in models.items()}

    def span(key: str) -> str:
        low, high = (f(result[key] / MIB for result in results.values()) for f in (min, max))
        return f"{low:.0f} MiB" if round(low) == round(high) else f"{low:.0f} to {high:.0f} MiB"

    print(
        f"fine-tuning everything, batch {BATCH}, {STEPS} steps, Adam, float32, one subprocess "
        f"per model; RSS after importing tensorflow: {span('tensorflow')}; baseline = RSS "
        f"after importing tensorflow and tfx_transfer: {span('baseline')}"
    )
    print()
    print(HEADER)
    print("|" + "---|" * (HEADER.count(" | ") + 1))
    for name, result in results.items():
        print(
            f"| {name} ({models[name]} px) | {result['parameters'] / 1e6:.1f} M "
            f"| {result['peak'] / MIB:,.0f} | {(result['peak'] - result['baseline']) / MIB:,.0f} "
            f"| {16 * result['parameters'] / MIB:,.0f} | {result['seconds']:.1f} |"
        )
    print()
    print(
        f"other processes kept {others_cores(since):.2f} of {os.cpu_count()} cores busy on "
        f"average; runtime {time.perf_counter() - since[0]:.0f} s"
    )
    ratio = results["vgg16"]["peak"] / results["mobilenet_v2"]["peak"]
    print(f"peak RSS vgg16 / mobilenet_v2: {ratio:.2f}")
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
