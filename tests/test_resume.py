"""Kill a training run with SIGKILL and resume it: the weights end exactly as in
an uninterrupted run, Dropout included."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np, keras
    sys.path.insert(0, sys.argv[4])
    from helpers import conv_classifier, random_images
    import tfx_transfer as tt

    directory, kill_at, output = sys.argv[1], sys.argv[2], sys.argv[3]
    keras.utils.set_random_seed(0)
    model = conv_classifier(3, dropout=0.5)
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, labels = random_images(40), np.arange(40) % 3

    class Kill(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch = 0
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if kill_at == "mid_epoch" and self.epoch == 2 and batch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    if kill_at == "while_saving":
        original = tt.training.resume.np.savez
        def dying_savez(handle, **arrays):
            if int(arrays["epochs_done"]) == 3:
                handle.write(b"partial")
                handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            original(handle, **arrays)
        tt.training.resume.np.savez = dying_savez

    tt.training.fit_resumable(
        model, images, labels, epochs=5, batch_size=8, directory=directory, seed=3,
        callbacks=[Kill()],
    )
    np.savez(output, *[w.numpy() for w in model.weights])
    """
)


def run(tmp_path, directory, kill_at, output):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    tests = str(__import__("pathlib").Path(__file__).parent)
    return subprocess.run(
        [sys.executable, str(script), str(directory), kill_at, str(output), tests],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["mid_epoch", "while_saving"])
def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path, kill_at):
    reference = run(tmp_path, tmp_path / "reference", "never", tmp_path / "reference.npz")
    assert reference.returncode == 0, reference.stderr[-2000:]
    killed = run(tmp_path, tmp_path / "state", kill_at, tmp_path / "unused.npz")
    assert killed.returncode == -9  # SIGKILL
    assert not (tmp_path / "unused.npz").exists()
    resumed = run(tmp_path, tmp_path / "state", "never", tmp_path / "resumed.npz")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected, got = np.load(tmp_path / "reference.npz"), np.load(tmp_path / "resumed.npz")
    assert expected.files == got.files
    for name in expected.files:
        np.testing.assert_array_equal(expected[name], got[name])
