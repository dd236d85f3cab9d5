"""`tt.tune` and `tfx-transfer tune`: the search space, searches end to end (random,
Bayesian, Hyperband), the best trial's YAML reproducing the trial when trained again,
the CLI, and resuming a search killed with SIGKILL."""

import copy
import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras_tuner as kt
import pytest
import yaml
from helpers import assert_user_error

import tfx_transfer as tt
from tfx_transfer.app.run_config import ConfigError, config_from_dict, load_run_config
from tfx_transfer.app.runner import load_seeded_data, train_model
from tfx_transfer.app.tuning import apply_values, parse_space
from tfx_transfer.app.tuning.search import final_val_loss

PNG = b"\x89PNG\r\n\x1a\n"
LR0 = "fine_tune.stages.0.learning_rate"
BLOCKS1 = "fine_tune.stages.1.top_blocks"
DROPOUT = "model.dropout"

# The brief's tiny config: random weights, chance accuracy; no training in the fast tests.
TINY = {
    "model": {
        "backbone": "mobilenet_v3_small",
        "weights": None,
        "input_size": 32,
        "hidden_units": [16],
    },
    "data": {
        "source": "shapes",
        "classes": ["red_circle", "green_square", "blue_triangle"],
        "images_per_class": 12,
        "image_size": 32,
        "batch_size": 8,
        "validation_split": 0.34,
    },
    "fine_tune": {
        "stages": [
            {"train": "head", "epochs": 3, "learning_rate": 0.01, "cache_features": True},
            {"train": "top_blocks", "top_blocks": 1, "epochs": 1, "learning_rate": 0.001},
        ]
    },
    "run": {"root": "runs", "name": "tuned"},
    "tune": {
        "algorithm": "random",
        "max_trials": 2,
        "space": {
            LR0: {"min": 0.001, "max": 0.1, "sampling": "log"},
            BLOCKS1: {"values": [1, 2]},
            DROPOUT: {"min": 0.0, "max": 0.5},
        },
    },
}


def tiny(**sections):
    """TINY with some sections' keys replaced (a None value removes the key)."""
    tree = copy.deepcopy(TINY)
    for section, changes in sections.items():
        if changes is None:
            tree.pop(section, None)
            continue
        for key, value in changes.items():
            if value is None:
                tree[section].pop(key, None)
            else:
                tree[section][key] = value
    return tree


def uncached():
    """TINY without cached features (so augmentation may be searched), no tune section."""
    tree = tiny(tune=None)
    tree["fine_tune"]["stages"][0]["cache_features"] = False
    return config_from_dict(tree)


def value_at(config, key):
    node = config.to_dict()
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


# --- The search space (no training) ---------------------------------------------------


def test_parse_space_registers_a_float_an_int_a_grid_and_a_choice():
    base = config_from_dict(tiny(tune=None))
    space = {
        LR0: {"min": 1e-4, "max": 1e-2, "sampling": "log"},
        "fine_tune.stages.0.epochs": {"min": 1, "max": 3},
        DROPOUT: {"min": 0.0, "max": 0.5, "step": 0.1},
        "fine_tune.stages.0.schedule": {"values": ["constant", "warmup_cosine"]},
    }
    parameters = parse_space(space, base)
    assert [p.key for p in parameters] == list(space)
    hp = kt.HyperParameters()
    for parameter in parameters:
        parameter.register(hp)
    registered = {entry["config"]["name"]: entry for entry in hp.get_config()["space"]}
    assert registered[LR0]["class_name"] == "Float"
    assert registered[LR0]["config"]["sampling"] == "log"
    assert registered["fine_tune.stages.0.epochs"]["class_name"] == "Int"
    assert registered[DROPOUT]["class_name"] == "Float"
    assert registered[DROPOUT]["config"]["step"] == 0.1
    assert registered["fine_tune.stages.0.schedule"]["class_name"] == "Choice"
    assert registered["fine_tune.stages.0.schedule"]["config"]["values"] == [
        "constant",
        "warmup_cosine",
    ]


@pytest.mark.parametrize(
    "key, spec, fragment",
    [
        ("fine_tune.stages.0.learnin_rate", {"min": 0.01, "max": 0.1}, "'learnin_rate'"),
        ("fine_tune.stages.5.learning_rate", {"min": 0.01, "max": 0.1}, "'5'"),
        ("tune.max_trials", {"min": 1, "max": 3}, "only the sections"),
        ("model.dropoot", {"min": 0.0, "max": 0.5}, "'dropoot'"),
        ("fine_tune.stages.0", {"values": [1, 2]}, "whole section"),
        ("fine_tune.stages", {"values": [1, 2]}, "whole section"),
        (DROPOUT, {"min": 0.3, "max": 0.3}, "empty range"),
        (DROPOUT, {"min": 0.5, "max": 0.1}, "empty range"),
        (LR0, {"min": 0.0, "max": 0.1}, "learning_rate must be > 0"),
        (LR0, {"min": -0.1, "max": 0.1}, "learning_rate must be > 0"),
        (LR0, {"values": [0.01, -0.001]}, "learning_rate must be > 0"),
        ("data.batch_size", {"min": 0, "max": 16}, "batch_size must be > 0"),
        (DROPOUT, {"values": []}, "non-empty list"),
        (DROPOUT, {"values": [0.1, 0.1]}, "duplicates"),
        (DROPOUT, {"values": [0.1], "min": 0.0}, "no min/max"),
        (DROPOUT, {"min": 0.0, "max": 0.5, "steps": 0.1}, "unknown range options ['steps']"),
        (DROPOUT, {"low": 0.0, "high": 0.5}, "unknown range options ['high', 'low']"),
        (DROPOUT, {"min": 0.1}, "needs both 'min' and 'max'"),
        (DROPOUT, {"min": "a", "max": 0.5}, "must be numbers"),
        (DROPOUT, 0.3, "expected a range"),
        (DROPOUT, {"min": 0.0, "max": 0.5, "sampling": "log"}, "log sampling needs min > 0"),
        (LR0, {"min": 0.0, "max": 0.1, "sampling": "reverse_log"}, "needs min > 0"),
        (DROPOUT, {"min": 0.1, "max": 0.5, "sampling": "exp"}, "sampling 'exp'"),
        ("fine_tune.stages.0.train", {"values": ["head", "neck"]}, "'neck'"),
        ("fine_tune.stages.1.top_blocks", {"values": [1, "two"]}, "'two'"),
        ("fine_tune.augmentation.rotation", {"min": 0.0, "max": 0.2}, "cache features"),
    ],
)
def test_space_mistakes_are_value_errors_naming_the_key(key, spec, fragment):
    base = config_from_dict(tiny(tune=None))
    with pytest.raises(ValueError) as error:
        parse_space({key: spec}, base)
    assert repr(key) in str(error.value)
    assert fragment in str(error.value)


def test_an_empty_space_and_a_missing_space_are_errors(tmp_path):
    base = config_from_dict(tiny(tune=None))
    with pytest.raises(ValueError, match="empty"):
        parse_space({}, base)
    with pytest.raises(ValueError, match="needs a search space"):
        tt.tune(base, directory=tmp_path)


def test_tune_checks_the_space_and_objective_before_training(tmp_path):
    base = config_from_dict(tiny(tune=None))
    started = time.time()
    with pytest.raises(ValueError, match="'fine_tune.stages.0.learnin_rate'"):
        tt.tune(
            base,
            space={"fine_tune.stages.0.learnin_rate": {"min": 0.01, "max": 0.1}},
            directory=tmp_path,
        )
    with pytest.raises(ValueError, match="val_map"):
        tt.tune(base, space=TINY["tune"]["space"], objective="val_map", directory=tmp_path)
    with pytest.raises(ValueError, match="expand"):
        tt.tune(base, space=TINY["tune"]["space"], objective="old_new_balance", directory=tmp_path)
    with pytest.raises(ValueError, match="algorithm='grid'"):
        tt.tune(base, space=TINY["tune"]["space"], algorithm="grid", directory=tmp_path)
    assert time.time() - started < 10
    assert not list(tmp_path.glob("*/trial_*"))


def test_an_augmentation_key_is_searchable_when_augmentation_is_null():
    base = uncached()
    assert base.fine_tune.augmentation is None
    key = "fine_tune.augmentation.rotation"
    assert [p.key for p in parse_space({key: {"min": 0.0, "max": 0.2}}, base)] == [key]
    assert apply_values(base, {key: 0.1}).fine_tune.augmentation == {"rotation": 0.1}
    both = apply_values(base, {key: 0.1, "fine_tune.augmentation.flip": 1.0})
    assert both.fine_tune.augmentation == {"rotation": 0.1, "flip": 1.0}
    with pytest.raises(ValueError, match="'fine_tune.augmentation.sparkle'.*sparkle"):
        parse_space({"fine_tune.augmentation.sparkle": {"min": 0.0, "max": 0.2}}, base)


def test_apply_values_sets_nested_keys_and_leaves_the_base_alone():
    base = config_from_dict(tiny(tune=None))
    before = base.to_dict()
    config = apply_values(
        base,
        {
            LR0: 0.003,
            BLOCKS1: 2,
            "fine_tune.stages.1.schedule": "warmup_cosine",
            DROPOUT: 0.35,
            "data.batch_size": 4,
        },
    )
    first, second = config.fine_tune.stages
    assert first.learning_rate == 0.003 and first.epochs == 3 and first.cache_features
    assert second.top_blocks == 2 and second.schedule == "warmup_cosine"
    assert second.learning_rate == 0.001
    assert config.model.dropout == 0.35 and config.model.hidden_units == (16,)
    assert config.data.batch_size == 4 and config.data.images_per_class == 12
    assert base.to_dict() == before
    assert apply_values(base, {}) == base
    with pytest.raises(ValueError):
        apply_values(base, {"fine_tune.stages.0.learning_rate": -1.0})


def test_final_val_loss_is_the_last_stages_last_value():
    history = {
        "stage2_val_loss": [0.6, 0.5],
        "stage10_val_loss": [0.4, 0.3],
        "stage1_val_loss": [0.9],
        "stage10_loss": [0.1],
        "stage3_val_loss": [],
    }
    assert final_val_loss(history) == 0.3
    assert math.isnan(final_val_loss({"stage1_loss": [1.0]}))


@pytest.mark.parametrize(
    "line, replacement, fragments",
    [
        ("  algorithm: random", "  algorithm: grid", ["tune.algorithm", "grid"]),
        ("  algorithm: random", "  algorithm: random\n  objective: top1", ["tune.objective"]),
        ("  max_trials: 2", "  max_trials: two", ["tune.max_trials", "expected an integer"]),
        ("  max_trials: 2", "  max_trials: 2\n  trials: 3", ["tune.trials", "unknown key"]),
    ],
)
def test_bad_tune_sections_are_config_errors_naming_the_line(
    tmp_path, in_process, line, replacement, fragments
):
    text = yaml.safe_dump(TINY, sort_keys=False)
    assert f"\n{line}\n" in text
    text = text.replace(f"\n{line}\n", f"\n{replacement}\n")
    bad_line = text.splitlines().index(replacement.splitlines()[-1]) + 1
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError) as error:
        load_run_config(tmp_path / "bad.yaml")
    for fragment in (f"bad.yaml, line {bad_line}", *fragments):
        assert fragment in str(error.value)
    assert_user_error(in_process("tune", "bad.yaml"), f"line {bad_line}", *fragments)


def test_tune_without_a_tune_section_is_a_user_error(tmp_path, in_process):
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(tiny(tune=None)))
    result = in_process("tune", "plain.yaml")
    assert_user_error(result, "plain.yaml", "no `tune` section")
    assert not (tmp_path / "tuning").exists()


def test_a_bad_space_in_the_yaml_exits_like_a_bad_config(tmp_path, in_process):
    text = yaml.safe_dump(TINY, sort_keys=False).replace(LR0, "fine_tune.stages.0.learnin_rate")
    (tmp_path / "bad.yaml").write_text(text)
    assert_user_error(in_process("tune", "bad.yaml"), "'fine_tune.stages.0.learnin_rate'")


# --- Searches end to end ----------------------------------------------------------------


@pytest.fixture(scope="module")
def pretrained_backbone(tmp_path_factory):
    """The shipped base model's mobilenet_v3_small weights as a weights file: a new head on
    them learns the novel classes at some learning rates and not at others, so the trials'
    accuracies differ."""
    from tfx_transfer.training.unfreeze import find_backbone

    path = tmp_path_factory.mktemp("weights") / "shapes90_backbone.weights.h5"
    find_backbone(tt.demo.base_model()).save_weights(path)
    return path


def pretrained(weights, algorithm="random", max_trials=3):
    """A config that trains quickly on the pretrained backbone (64x64); data.seed=1 so that
    the oracle draws the same hyperparameters every time (KerasTuner treats seed 0 as none)."""
    tree = tiny(
        model={"weights": str(weights), "input_size": 64},
        data={
            "image_size": 64,
            "classes": ["blue_crescent", "red_arrow", "red_circle"],
            "seed": 1,
        },
    )
    tree["fine_tune"]["stages"][0]["epochs"] = 1
    tree["fine_tune"]["stages"][1]["learning_rate"] = 1e-6
    tree["tune"].update(algorithm=algorithm, max_trials=max_trials)
    return tree


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def trial_json(search, trial_id):
    return json.loads((search / f"trial_{trial_id}" / "trial.json").read_text())


def check_result_files(result, max_trials):
    search = Path(result.directory)
    columns = ["trial", "status", result.objective, "val_loss", *result.keys]
    rows = read_csv(result.csv)
    assert list(rows[0]) == columns
    assert len(rows) == len(result.trials) == max_trials
    assert {row["status"] for row in rows} == {"COMPLETED"}
    assert len({row["trial"] for row in rows}) == max_trials
    assert [row["trial"] for row in rows] == [t["trial"] for t in result.trials]
    scores = [t[result.objective] for t in result.trials]
    assert scores == sorted(scores, reverse=True)  # best first
    table = result.table().splitlines()
    assert table[0] == "| " + " | ".join(columns) + " |"
    assert len(table) == 2 + max_trials
    assert result.markdown.read_text() == result.table()
    assert result.plot.read_bytes()[:8] == PNG and result.plot.name == "search.png"
    for trial in result.trials:  # what trials.csv says is what KerasTuner recorded
        recorded = trial_json(search, trial["trial"])
        assert recorded["status"] == "COMPLETED" and recorded["score"] == trial[result.objective]
        for key in result.keys:
            assert recorded["hyperparameters"]["values"][key] == trial[key]
    return rows


def check_best_config(result, patience=2):
    best = result.trials[0]
    assert result.best_trial == best["trial"]
    assert result.best_value == best[result.objective]
    for key in result.keys:
        assert value_at(result.best_config, key) == best[key], key
    assert result.best_config.tune is None
    assert {s.early_stopping_patience for s in result.best_config.fine_tune.stages} == {patience}
    assert result.best_yaml.read_text().startswith(f"# Best trial {best['trial']} of the search")
    assert load_run_config(result.best_yaml) == result.best_config


def assert_reproduced(result, in_process, root):
    """`tfx-transfer train best.yaml` gives the best trial's val_loss and val_accuracy."""
    best = result.trials[0]
    trained = in_process("train", result.best_yaml, "--quiet")
    assert trained.returncode == 0, trained.stderr[-3000:]
    run = root / result.best_config.run.root / result.best_config.run.name
    last = read_csv(run / "history.csv")[-1]
    assert float(last["val_loss"]) == pytest.approx(best["val_loss"], abs=1e-6)
    summary = json.loads((run / "report.json").read_text())["summary"]
    assert summary["top1"] == pytest.approx(best["val_accuracy"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_search_writes_its_results_and_best_yaml_reproduces_the_trial(
    tmp_path, in_process, pretrained_backbone, algorithm
):
    config = config_from_dict(pretrained(pretrained_backbone, algorithm))
    result = tt.tune(config, directory="searches", name=algorithm)
    assert isinstance(result, tt.TuneResult)
    assert Path(result.directory) == Path("searches") / algorithm
    assert result.objective == "val_accuracy"
    assert result.keys == [LR0, BLOCKS1, DROPOUT]
    check_result_files(result, max_trials=3)
    # The trials' accuracies differ, so matching the best one's below says something.
    assert len({trial["val_accuracy"] for trial in result.trials}) > 1, result.table()
    check_best_config(result)
    for trial in result.trials:
        assert 1e-3 <= trial[LR0] <= 0.1 and trial[BLOCKS1] in (1, 2)
        assert 0.0 <= trial[DROPOUT] <= 0.5 and trial["val_loss"] > 0
    assert_reproduced(result, in_process, tmp_path)


@pytest.mark.slow
def test_cli_tune_prints_the_table_and_resumes_without_new_trials(tmp_path, in_process):
    tree = tiny()
    tree["tune"]["max_trials"] = 5
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    result = in_process("tune", "tune.yaml", "--max-trials", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    search = tmp_path / "tuning" / "search"
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"| trial | status | val_accuracy | val_loss | {LR0} | {BLOCKS1} | {DROPOUT} |"
    )
    assert lines[2].startswith("| 0 | COMPLETED | ") and not lines[3].startswith("|")
    assert lines[3].startswith("best trial 0: val_accuracy = ")
    assert "best config: tuning/search/best.yaml (tfx-transfer train runs it)" in lines
    rows = read_csv(search / "trials.csv")
    assert [row["trial"] for row in rows] == ["0"]
    for name in ("trials.md", "best.yaml", "search.png"):
        assert (search / name).is_file()
    best = load_run_config(search / "best.yaml")
    assert best.tune is None
    assert best.fine_tune.stages[0].learning_rate == float(rows[0][LR0])
    assert best.fine_tune.stages[1].top_blocks == int(rows[0][BLOCKS1])
    assert best.model.dropout == float(rows[0][DROPOUT])

    # The same search again: the finished trial is kept, none is added.
    again = in_process("tune", "tune.yaml", "--max-trials", "1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert read_csv(search / "trials.csv") == rows
    # --overwrite starts afresh.
    (search / "marker").write_text("from before")
    fresh = in_process("tune", "tune.yaml", "--max-trials", "1", "--overwrite")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert not (search / "marker").exists()
    assert [row["trial"] for row in read_csv(search / "trials.csv")] == ["0"]

    # `tfx-transfer train` runs the config and ignores its tune section.
    trained = in_process("train", "tune.yaml", "--quiet")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "run directory: runs/tuned" in trained.stdout
    assert json.loads((tmp_path / "runs" / "tuned" / "report.json").read_text())["summary"]


def poll(condition, timeout, process):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_a_search_killed_after_its_first_trial_resumes_with_it(
    tmp_path, in_process, pretrained_backbone
):
    tree = pretrained(pretrained_backbone, max_trials=2)
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    search = tmp_path / "tuning" / "search"
    first = search / "trial_0" / "trial.json"

    def first_trial_done():
        try:
            if json.loads(first.read_text())["status"] != "COMPLETED":
                return False
            # ... and trial 1 has checkpointed an epoch: the oracle has moved on (KerasTuner
            # saves oracle.json with an ended trial still "ongoing" until the next trial
            # starts), and the kill interrupts trial 1 in the middle.
            ongoing = json.loads((search / "oracle.json").read_text())["ongoing_trials"]
            return (
                "0" not in ongoing.values()
                and (search / "trial_1" / "state" / "state.npz").is_file()
            )
        except (OSError, ValueError, KeyError):
            return False

    process = subprocess.Popen(
        [sys.executable, "-m", "tfx_transfer.app.cli", "tune", "tune.yaml"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    try:
        done = poll(first_trial_done, 240, process)
        process.send_signal(signal.SIGKILL)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert done, err.decode()[-3000:]
    assert process.returncode == -signal.SIGKILL
    before = trial_json(search, "0")
    written = first.stat().st_mtime_ns
    assert not (search / "trials.csv").exists()  # killed before the search ended
    interrupted = trial_json(search, "1")  # created before the kill (see first_trial_done)
    assert interrupted["status"] == "RUNNING"

    result = in_process("tune", "tune.yaml", "--max-trials", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["trial"]: row for row in read_csv(search / "trials.csv")}
    assert sorted(rows) == ["0", "1", "2"], (rows, interrupted)
    assert {row["status"] for row in rows.values()} == {"COMPLETED"}
    after = trial_json(search, "0")
    assert after["score"] == before["score"] and after["status"] == "COMPLETED"
    assert after["hyperparameters"]["values"] == before["hyperparameters"]["values"]
    assert after["metrics"] == before["metrics"]
    assert first.stat().st_mtime_ns == written  # not run again
    resumed = trial_json(search, "1")  # the interrupted trial ran again with its values
    assert resumed["hyperparameters"]["values"] == interrupted["hyperparameters"]["values"]
    assert float(rows["0"]["val_accuracy"]) == before["score"]
    val_loss = before["metrics"]["metrics"]["val_loss"]["observations"][-1]["value"][-1]
    assert float(rows["0"]["val_loss"]) == val_loss
    assert float(rows["0"][LR0]) == before["hyperparameters"]["values"][LR0]

    # Trial 1, resumed from its checkpoint, ends as an uninterrupted training of its config
    # (with a checkpoint directory, as in a trial and in `tfx-transfer train`).
    values = {key: resumed["hyperparameters"]["values"][key] for key in (LR0, BLOCKS1, DROPOUT)}
    config = apply_values(dataclasses.replace(load_run_config("tune.yaml"), tune=None), values)
    stages = [dataclasses.replace(s, early_stopping_patience=2) for s in config.fine_tune.stages]
    config = dataclasses.replace(
        config, fine_tune=dataclasses.replace(config.fine_tune, stages=tuple(stages))
    )
    trained = train_model(
        config, load_seeded_data(config), checkpoint_dir=str(tmp_path / "again"), verbose=0
    )
    assert final_val_loss(trained.history) == pytest.approx(float(rows["1"]["val_loss"]), abs=1e-6)


@pytest.mark.slow
def test_hyperband_runs_its_brackets_within_their_epoch_budgets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tree = tiny(data={"seed": 1})
    del tree["fine_tune"]["stages"][1]  # one cheap stage: the head on cached features
    config = config_from_dict(tree)
    result = tt.tune(config, algorithm="hyperband", space={DROPOUT: {"min": 0.0, "max": 0.5}})
    # max_epochs 3, factor 3: a bracket of 3 trials at 1 epoch then 1 at 3, and one of 2 at 3.
    rows = check_result_files(result, max_trials=6)
    budgets = {}
    for row in rows:
        values = trial_json(Path(result.directory), row["trial"])["hyperparameters"]["values"]
        budgets[row["trial"]] = values["tuner/epochs"]
    assert sorted(budgets.values()) == [1, 1, 1, 3, 3, 3]
    assert [stage.epochs for stage in result.best_config.fine_tune.stages] == [
        budgets[result.best_trial]
    ]
    assert load_run_config(result.best_yaml) == result.best_config


@pytest.mark.slow
def test_trials_do_not_share_a_configured_checkpoint_dir(
    tmp_path, monkeypatch, pretrained_backbone
):
    monkeypatch.chdir(tmp_path)
    tree = pretrained(pretrained_backbone, max_trials=2)
    tree["fine_tune"]["checkpoint_dir"] = "checkpoints"
    result = tt.tune(config_from_dict(tree))
    first, second = result.trials
    assert first[LR0] != second[LR0]
    # Without checkpoint_dir these two trials score 1.0 / 0.4737 and 0.8333 / 0.5924.
    assert first["val_loss"] != second["val_loss"], result.table()


def test_the_oracle_is_seeded_with_data_seed():
    from tfx_transfer.app.tuning.search import _oracle

    config = config_from_dict(tiny(data={"seed": 7}))
    for algorithm in ("random", "bayesian", "hyperband"):
        settings = dataclasses.replace(config.tune, algorithm=algorithm)
        assert _oracle(settings, "val_accuracy", config).seed == 7


def test_the_default_seed_makes_a_search_reproducible_too():
    from tfx_transfer.app.tuning.search import _oracle

    config = config_from_dict(tiny())
    assert config.data.seed == 0
    seeds = {_oracle(config.tune, "val_accuracy", config).seed for _ in range(3)}
    assert len(seeds) == 1, seeds
