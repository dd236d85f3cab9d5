"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 train the same weights."""

import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

WORKER = textwrap.dedent(
    """
    import json, os, sys
    index, ports, output = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
        "task": {"type": "worker", "index": index},
    })
    import numpy as np, tensorflow as tf, keras
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import tfx_transfer as tt
    from tfx_transfer.training import Stage

    def builder():
        keras.utils.set_random_seed(0)
        return tt.build_classifier(
            "mobilenet_v3_small", 3, weights=None, input_shape=(32, 32, 3),
            hidden_units=(16,), dropout=0.0,
        )

    initial = [w.numpy() for w in builder().weights]
    images = np.random.default_rng(0).uniform(0, 255, (32, 32, 32, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((images, np.arange(32) % 3)).batch(8, drop_remainder=True)
    stage = Stage(epochs=2, learning_rate=0.05, optimizer="sgd")
    model, history = tt.fine_tune(builder, data, stages=[stage], strategy=strategy, verbose=0)
    moved = max(float(np.max(np.abs(a - w.numpy()))) for a, w in zip(initial, model.weights))
    assert np.isfinite(history["stage1_loss"]).all()
    np.savez(output, moved=moved, *[w.numpy() for w in model.weights])
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_workers_on_loopback_train_identical_weights(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ports = f"{free_port()},{free_port()}"
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(index), ports, str(tmp_path / f"w{index}.npz")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in (0, 1)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr[-3000:]
    first, second = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert float(first["moved"]) > 1e-3  # the weights really trained
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name])
