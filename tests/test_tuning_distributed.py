"""A distributed `tfx-transfer tune`: KerasTuner's chief (the oracle) and two workers, three
processes on 127.0.0.1 sharing one working directory."""

import csv
import json
import os
import socket
import subprocess
import sys
import time

import pytest

MAX_TRIALS = 4
TIMEOUT = 420  # s; about 90 s when the machine is not busy

CONFIG = f"""\
model:
  backbone: mobilenet_v3_small
  weights: null
  input_size: 32
  hidden_units: [16]
data:
  source: shapes
  classes: [red_circle, green_square, blue_triangle]
  images_per_class: 12
  image_size: 32
  batch_size: 8
  validation_split: 0.34
fine_tune:
  stages:
    - {{train: head, epochs: 3, learning_rate: 0.01, cache_features: true}}
    - {{train: top_blocks, top_blocks: 1, epochs: 1, learning_rate: 0.001}}
run:
  root: runs
  name: tuned
tune:
  algorithm: random
  max_trials: {MAX_TRIALS}
  space:
    fine_tune.stages.0.learning_rate: {{min: 0.001, max: 0.1, sampling: log}}
    fine_tune.stages.1.top_blocks: {{values: [1, 2]}}
    model.dropout: {{min: 0.0, max: 0.5}}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_chief_and_two_workers_complete_the_search(tmp_path):
    (tmp_path / "tune.yaml").write_text(CONFIG)
    port = free_port()
    processes, logs = {}, {}
    deadline = time.monotonic() + TIMEOUT
    try:
        for tuner_id in ("chief", "tuner0", "tuner1"):
            env = {
                **os.environ,
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "KERASTUNER_TUNER_ID": tuner_id,
                "KERASTUNER_ORACLE_IP": "127.0.0.1",
                "KERASTUNER_ORACLE_PORT": str(port),
            }
            # Files, not pipes: a full pipe would stall a worker and with it the search.
            logs[tuner_id] = (tmp_path / f"{tuner_id}.out", tmp_path / f"{tuner_id}.err")
            with open(logs[tuner_id][0], "w") as out, open(logs[tuner_id][1], "w") as err:
                processes[tuner_id] = subprocess.Popen(
                    [sys.executable, "-m", "tfx_transfer.app.cli", "tune", "tune.yaml"],
                    cwd=tmp_path,
                    env=env,
                    stdout=out,
                    stderr=err,
                )
        for process in processes.values():
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for process in processes.values():  # on a timeout or any error: end all three
            if process.poll() is None:
                process.kill()
                process.wait()
    outputs = {
        tuner_id: (out.read_text(), err.read_text()) for tuner_id, (out, err) in logs.items()
    }

    for tuner_id, process in processes.items():
        assert process.returncode == 0, (tuner_id, outputs[tuner_id][1][-3000:])
        assert "Traceback" not in outputs[tuner_id][1], (tuner_id, outputs[tuner_id][1][-3000:])
    for worker in ("tuner0", "tuner1"):
        assert "worker: the chief's trials are done" in outputs[worker][0], outputs[worker]
        assert "best trial" not in outputs[worker][0]

    chief = outputs["chief"][0].splitlines()
    table = [line for line in chief if line.startswith("| ")]
    assert len(table) == 1 + MAX_TRIALS, outputs["chief"][0]
    assert any(line.startswith("best trial ") for line in chief)
    assert "best config: tuning/search/best.yaml (tfx-transfer train runs it)" in chief

    search = tmp_path / "tuning" / "search"
    with open(search / "trials.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    ids = [row["trial"] for row in rows]
    assert len(ids) == MAX_TRIALS and len(set(ids)) == MAX_TRIALS, ids
    assert {row["status"] for row in rows} == {"COMPLETED"}
    assert all(row["val_accuracy"] and row["val_loss"] for row in rows)
    recorded = {
        path.parent.name: json.loads(path.read_text()) for path in search.glob("trial_*/trial.json")
    }
    assert sorted(recorded) == sorted(f"trial_{trial_id}" for trial_id in ids)
    assert {trial["status"] for trial in recorded.values()} == {"COMPLETED"}
    assert (search / "best.yaml").is_file()
    # The workers ran the trials: a tuner saves its `<id>.json` when it ends a trial (the
    # chief's is saved before it starts serving). Not both: one may start late and find the
    # other has run them all.
    assert (search / "tuner0.json").is_file() or (search / "tuner1.json").is_file()
