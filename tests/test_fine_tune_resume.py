"""Kill `tt.fine_tune` with SIGKILL in the middle of a stage and run it again:
it resumes from the last completed epoch and ends with exactly the weights of
an uninterrupted run (shuffled data, augmentation, Dropout, several stages)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    import numpy as np, keras
    sys.path.insert(0, sys.argv[5])
    from helpers import conv_classifier, random_images
    import tfx_transfer as tt
    from tfx_transfer.training import FineTuneConfig, Stage

    directory, kill_at, output, variant = sys.argv[1:5]
    keras.utils.set_random_seed(0)
    model = conv_classifier(3, dropout=0.5)
    images, labels = random_images(40), np.arange(40) % 3
    data = tt.data.arrays(
        images, labels, class_names=["a", "b", "c"], batch_size=8, validation_split=0.2, seed=1
    )
    if variant == "augmented":
        stages = (
            Stage(train="head", epochs=2, learning_rate=1e-2, class_weight="balanced"),
            Stage(train="all", epochs=3, learning_rate=1e-3, schedule="warmup_cosine"),
        )
        config = FineTuneConfig(stages=stages, augmentation={"flip": 1, "rotation": 0.1}, seed=5)
    else:
        stages = (
            Stage(train="head", epochs=2, learning_rate=1e-2, cache_features=True),
            Stage(train="all", epochs=3, learning_rate=1e-3, optimizer="sgd"),
        )
        config = FineTuneConfig(stages=stages)
    stage, epoch = (int(part) for part in kill_at.split(":"))

    class Kill(keras.callbacks.Callback):
        stage = 0
        def on_train_begin(self, logs=None):
            self.stage += 1  # one fit per stage
        def on_epoch_begin(self, number, logs=None):
            self.epoch = number
        def on_train_batch_end(self, batch, logs=None):
            if (self.stage, self.epoch, batch) == (stage, epoch, 1):
                os.kill(os.getpid(), signal.SIGKILL)

    kill = Kill()
    model, history = tt.fine_tune(
        model, data, config=config, checkpoint_dir=directory, callbacks=[kill], verbose=0
    )
    np.savez(output, *[w.numpy() for w in model.weights])
    with open(output + ".json", "w") as handle:
        json.dump(history, handle)
    """
)


def run(tmp_path, directory, kill_at, output, variant):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    tests = str(Path(__file__).parent)
    return subprocess.run(
        [sys.executable, str(script), str(directory), kill_at, str(output), variant, tests],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant, kills",
    # "augmented" is killed in stage 1, and its resumed run again in stage 2, before the last
    # run finishes it: one uninterrupted reference serves both kills.
    [("augmented", ["1:1", "2:1"]), ("cached", ["2:2"])],
    ids=["augmented-1:1-then-2:1", "cached-2:2"],
)
def test_killed_and_resumed_fine_tune_equals_uninterrupted(tmp_path, variant, kills):
    reference = run(
        tmp_path, tmp_path / "reference", "0:0", str(tmp_path / "reference.npz"), variant
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    for kill_at in kills:
        killed = run(tmp_path, tmp_path / "state", kill_at, str(tmp_path / "unused.npz"), variant)
        assert killed.returncode == -9, (kill_at, killed.stderr[-3000:])  # SIGKILL
    resumed = run(tmp_path, tmp_path / "state", "0:0", str(tmp_path / "resumed.npz"), variant)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = np.load(tmp_path / "reference.npz"), np.load(tmp_path / "resumed.npz")
    assert len(expected.files) == len(got.files)
    for name in expected.files:
        np.testing.assert_array_equal(expected[name], got[name])
    history = (tmp_path / "reference.npz.json").read_text()
    assert (tmp_path / "resumed.npz.json").read_text() == history
