"""tf.distribute on CPU: two logical devices in a fresh process (the same code
path MirroredStrategy takes over GPUs)."""

import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from tfx_transfer.training.distribute import resolve_strategy

# One fresh process runs both scripts below (starting it, importing TensorFlow and setting up
# the two logical CPUs is much of their cost); each prints the lines its test checks.
SETUP = textwrap.dedent(
    """
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    import keras
    import tfx_transfer as tt
    from tfx_transfer.training import Stage

    # One strategy for both: a second MirroredStrategy over the same devices in one process
    # would reuse its collective instance keys.
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    """
)

SCRIPT = textwrap.dedent(
    """
    def builder():
        keras.utils.set_random_seed(0)
        return tt.build_classifier(
            "mobilenet_v3_small", 3, weights=None, input_shape=(32, 32, 3),
            hidden_units=(16,), dropout=0.0,
        )

    images = np.random.default_rng(0).uniform(0, 255, (32, 32, 32, 3)).astype("float32")
    labels = np.arange(32) % 3
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8, drop_remainder=True)
    stages = [
        Stage(
            train="top_blocks", top_blocks=2, epochs=2, learning_rate=0.05, optimizer="sgd",
            discriminative_factor=0.5,
        )
    ]
    assert mirrored.num_replicas_in_sync == 2
    one, _ = tt.fine_tune(builder, data, stages=stages, verbose=0)
    two, _ = tt.fine_tune(builder(), data, stages=stages, strategy=mirrored, verbose=0)
    assert tt.class_info(two).class_names == tt.class_info(one).class_names
    difference = max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(one.weights, two.weights))
    moved = max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(one.weights, builder().weights))
    print(f"DIFFERENCE {difference} MOVED {moved}")
    """
)


@pytest.fixture(scope="module")
def two_cpus_stdout():
    """The stdout of SCRIPT, SYNC_BATCHNORM_SCRIPT and FASTER_RCNN_SCRIPT, run after SETUP in
    one process."""
    result = subprocess.run(
        [sys.executable, "-c", SETUP + SCRIPT + SYNC_BATCHNORM_SCRIPT + FASTER_RCNN_SCRIPT],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(two_cpus_stdout):
    line = next(line for line in two_cpus_stdout.splitlines() if line.startswith("DIFFERENCE"))
    _, difference, _, moved = line.split()
    assert float(moved) > 1e-3  # training really changed the weights
    assert float(difference) <= 1e-5


def test_strategy_resolution():
    assert resolve_strategy(None) is tf.distribute.get_strategy()
    assert resolve_strategy("auto") is tf.distribute.get_strategy()  # no GPU here
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    assert resolve_strategy(strategy) is strategy
    with pytest.raises(
        ValueError, match="strategy must be None, 'auto' or a tf.distribute.Strategy"
    ):
        resolve_strategy("mirrored")


SYNC_BATCHNORM_SCRIPT = textwrap.dedent(
    """
    def builder():
        keras.utils.set_random_seed(0)
        backbone = keras.Sequential(
            [
                keras.Input((16, 16, 3)),
                keras.layers.Rescaling(1 / 255),
                keras.layers.Conv2D(4, 3, strides=2),
                keras.layers.BatchNormalization(name="bn"),
            ],
            name="tiny_backbone",
        )
        return tt.build_classifier(
            backbone, 3, preprocessing="none", hidden_units=(8,), dropout=0.0,
            freeze_backbone=False,
        )

    # The two replicas see different halves: dark images, then bright ones.
    rng = np.random.default_rng(0)
    images = np.concatenate(
        [rng.uniform(0, 100, (8, 16, 16, 3)), rng.uniform(100, 255, (8, 16, 16, 3))]
    ).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((images, np.arange(16) % 3)).batch(16)

    def variance(model):
        return model.get_layer("tiny_backbone").get_layer("bn").moving_variance.numpy()

    for sync in (False, True):
        stage = Stage(
            train="all", epochs=1, learning_rate=1e-3, optimizer="sgd",
            train_batchnorm=True, sync_batchnorm=sync,
        )
        one, _ = tt.fine_tune(builder, data, stages=[stage], verbose=0)
        two, _ = tt.fine_tune(builder, data, stages=[stage], strategy=mirrored, verbose=0)
        difference = float(np.max(np.abs(variance(one) - variance(two))))
        synchronized = two.get_layer("tiny_backbone").get_layer("bn").synchronized
        print(f"SYNC {sync} {difference} {synchronized}")
    """
)


@pytest.mark.slow
def test_synchronized_batchnorm_matches_one_device_statistics(two_cpus_stdout):
    lines = [line.split() for line in two_cpus_stdout.splitlines() if line.startswith("SYNC")]
    (_, _, per_replica, _), (_, _, synchronized, left_on) = lines
    assert float(per_replica) > 1e-4  # per-replica statistics differ from the global batch's
    assert float(synchronized) <= 1e-5  # synchronized ones match one device
    assert left_on == "False"  # the layers are plain again after the stage


FASTER_RCNN_SCRIPT = textwrap.dedent(
    """
    def faster_rcnn():
        keras.utils.set_random_seed(0)
        return tt.build_detector(
            "faster_rcnn", "mobilenet_v3_small", 2, weights=None, input_shape=(64, 64, 3),
            feature_channels=16, head_units=32, roi_samples=32, train_proposals=16,
            test_proposals=16,
        )

    # Both replicas get the same two scenes, so each replica's normalised loss equals the whole
    # batch's: two replicas must take one device's step (the losses are divided by the
    # replicas before the gradients add up; without that division the step doubles).
    scenes = tt.data.synthetic_detection(
        2, image_size=64, classes=["red_circle", "blue_triangle"], batch_size=2
    )
    half = next(iter(scenes.train))
    batch = {
        "images": tf.concat([half["images"]] * 2, 0),
        "bounding_boxes": {k: tf.concat([v] * 2, 0) for k, v in half["bounding_boxes"].items()},
    }
    trained = []
    for scope in (tf.distribute.get_strategy(), mirrored):
        with scope.scope():
            detector = faster_rcnn()
            detector.compile(optimizer=keras.optimizers.SGD(0.1))
        detector.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
        trained.append(detector.trainable_weights)
    one, two = trained
    difference = max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(one, two))
    start = faster_rcnn().trainable_weights
    moved = max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(one, start))
    print(f"FASTER_RCNN {difference} {moved}")
    """
)


@pytest.mark.slow
def test_faster_rcnn_on_two_replicas_takes_one_devices_step(two_cpus_stdout):
    line = next(line for line in two_cpus_stdout.splitlines() if line.startswith("FASTER_RCNN"))
    _, difference, moved = line.split()
    assert float(moved) > 1e-3  # the step changed the weights
    # Not bit-exact: which proposals and anchors the replicas sample depends on the order in
    # which they advance the shared seed, so about half the runs differ by 4e-4 to 3e-3
    # (6% of the step; usually 1e-8). Losses not divided by the replicas differ by the whole step.
    assert float(difference) <= 0.25 * float(moved)
