"""The run directory (`tt.RunDirectory`) and its plots (`tt.plots`)."""

import csv
import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from helpers import conv_classifier, random_images
from PIL import Image

import tfx_transfer as tt
from tfx_transfer.app import plots
from tfx_transfer.app.run_dir import RunDirectory

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

HISTORY = {
    "stage1_loss": [1.2, 0.9],
    "stage1_accuracy": [0.4, 0.6],
    "stage1_val_loss": [1.1, float("nan")],
    "stage1_val_accuracy": [0.5, 0.55],
    "stage2_loss": [0.8, 0.7, 0.6],
    "stage2_accuracy": [0.65, 0.7, 0.75],
    "stage2_val_loss": [0.85, 0.8, 0.78],
    "stage2_val_accuracy": [0.6, 0.62, 0.64],
    "stage2_old_accuracy": [0.7],
    "stage2_new_accuracy": [0.5],
    "stage2_old_accuracy_change": [-0.01],
}


def assert_png(path, min_size=(200, 150)):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers


@pytest.fixture(scope="module")
def report():
    """A real 4-class report: a 3-class model expanded by one class, with the reference."""
    keras.utils.set_random_seed(0)
    base = conv_classifier(3)
    expanded = tt.expand_classes(base, 1)
    labels = np.array([0, 1, 2, 3] * 3)
    return tt.evaluate(expanded, (random_images(12), labels), reference=base)


def report_92(old=90):
    """An EvaluationReport over 92 classes, built directly; class 5 has no images."""
    rng = np.random.default_rng(0)
    confusion = rng.integers(0, 3, (92, 92)) + np.diag(rng.integers(5, 20, 92))
    confusion[5] = 0
    names = [f"class_{i:02d}" for i in range(92)]
    support = confusion.sum(axis=1)
    per_class = {
        name: {
            "precision": float(confusion[i, i] / max(confusion[:, i].sum(), 1)),
            "recall": float(confusion[i, i] / support[i]) if support[i] else 0.0,
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }
    return tt.EvaluationReport(
        top1=0.5,
        top5=0.9,
        per_class=per_class,
        confusion=confusion.tolist(),
        class_names=names,
        num_images=int(support.sum()),
        old_classes=old,
        old_accuracy=0.8,
        new_accuracy=0.6,
        reference_old_accuracy=0.81,
        old_accuracy_change=-0.01,
    )


# plots.py --------------------------------------------------------------------------------------


def test_split_history_separates_epochs_from_stage_evaluations():
    stages = plots.split_history(HISTORY)
    assert [(s.number, s.num_epochs) for s in stages] == [(1, 2), (2, 3)]
    assert "old_accuracy" not in stages[1].epochs
    assert stages[1].evaluation == {
        "old_accuracy": 0.7,
        "new_accuracy": 0.5,
        "old_accuracy_change": -0.01,
    }
    plain = plots.split_history({"loss": [1.0], "val_loss": [2.0]})
    assert [(s.number, s.num_epochs) for s in plain] == [(1, 1)]
    with pytest.raises(ValueError, match="no stage prefix"):
        plots.split_history({"stage1_loss": [1.0], "loss": [1.0]})
    with pytest.raises(ValueError, match="non-empty"):
        plots.split_history({})


@pytest.mark.parametrize(
    "history",
    [
        HISTORY,
        {"stage1_loss": [0.5], "stage1_val_loss": [0.6], "stage1_accuracy": [0.7]},  # one epoch
        {"stage1_loss": [1.0, 0.8], "stage2_loss": [0.7]},  # no validation, no accuracy
        {"loss": [1.0, 0.5], "accuracy": [0.2, 0.4], "learning_rate": [1e-3, 1e-4]},  # plain Keras
        {"stage1_loss": [0.5], "stage1_old_accuracy": [0.7], "stage1_new_accuracy": [0.2]},
    ],
    ids=["two_stages", "one_epoch", "no_validation", "plain_keras", "markers_own_panel"],
)
def test_plot_history_writes_a_png(tmp_path, history):
    path = plots.plot_history(history, tmp_path / "history.png")
    assert path == tmp_path / "history.png"
    assert_png(path)


def test_plot_confusion_with_many_classes_shows_the_most_confused(tmp_path):
    report = report_92()
    path = plots.plot_confusion(report, None, tmp_path / "confusion.png", max_classes=40)
    assert_png(path, min_size=(500, 500))
    small = plots.plot_confusion([[3, 1], [0, 4]], ["cat", "dog"], tmp_path / "small.png")
    assert_png(small)
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion([[1, 2, 3]], None, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="3 class names"):
        plots.plot_confusion([[3, 1], [0, 4]], ["a", "b", "c"], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_plot_old_new_with_92_classes_and_reference(tmp_path):
    report = report_92()
    reference = {f"class_{i:02d}": 0.8 for i in range(90)}
    path = plots.plot_old_new(report, tmp_path / "per_class.png", reference=reference)
    assert_png(path, min_size=(1000, 300))
    no_old = plots.plot_old_new(report_92(old=None), tmp_path / "plain.png")
    assert_png(no_old)


def test_plot_lr_find_writes_atomically(tmp_path):
    result = tt.training.LRFinderResult([1e-4, 1e-3, 1e-2], [2.0, 1.5, 3.0], 1e-4)
    assert_png(plots.plot_lr_find(result, tmp_path / "lr_find.png"))


# run_dir.py ------------------------------------------------------------------------------------


def test_run_directory_names(tmp_path):
    first, second = RunDirectory(tmp_path / "runs"), RunDirectory(tmp_path / "runs")
    assert first.path.is_dir() and second.path.is_dir() and first.path != second.path
    named = RunDirectory(tmp_path / "runs", name="demo")
    assert named.path == tmp_path / "runs" / "demo"
    assert RunDirectory(tmp_path / "runs", name="demo").path == named.path  # resume: reuse
    with pytest.raises(ValueError, match="plain directory name"):
        RunDirectory(tmp_path / "runs", name="../elsewhere")


def test_write_config_round_trips_a_fine_tune_config(tmp_path):
    run = RunDirectory(tmp_path, name="run")
    config = tt.training.FineTuneConfig(stages=(tt.training.Stage(epochs=2),), seed=3)
    path = run.write_config({"fine_tune": config, "data": tmp_path, "size": np.int64(64)})
    loaded = yaml.safe_load(path.read_text())
    assert loaded["data"] == str(tmp_path) and loaded["size"] == 64
    assert loaded["fine_tune"]["stages"][0]["epochs"] == 2
    assert tt.training.FineTuneConfig.from_dict(loaded["fine_tune"]) == config
    with pytest.raises(TypeError, match=r"config\['model'\] is a object"):
        run.write_config({"model": object()})


def test_history_csv_has_one_row_per_epoch(tmp_path):
    path = RunDirectory(tmp_path, name="run").history_csv(HISTORY)
    with path.open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 5
    assert list(rows[0])[:5] == ["stage", "epoch", "global_epoch", "loss", "accuracy"]
    assert [(r["stage"], r["epoch"], r["global_epoch"]) for r in rows] == [
        ("1", "1", "1"),
        ("1", "2", "2"),
        ("2", "1", "3"),
        ("2", "2", "4"),
        ("2", "3", "5"),
    ]
    assert float(rows[4]["val_loss"]) == 0.78 and math.isnan(float(rows[1]["val_loss"]))
    assert float(rows[4]["old_accuracy"]) == 0.7 and rows[2]["old_accuracy"] == ""


def test_report_json_and_markdown(tmp_path, report):
    run = RunDirectory(tmp_path, name="run")
    written = run.plots(history=HISTORY, evaluation=report)
    assert sorted(p.name for p in written) == ["confusion.png", "history.png", "per_class.png"]
    for path in written:
        assert_png(path)
    path = run.write_report(
        evaluation=report,
        history=HISTORY,
        timings={"train": 1.5, "evaluate": float("nan")},
        extra={"export": tmp_path / "saved_models" / "1"},
    )

    def no_constants(name):
        raise AssertionError(f"{name} in JSON")

    data = json.loads(path.read_text(), parse_constant=no_constants)
    old_new = data["old_new"]
    assert old_new["old_classes"] == 3 and old_new["new_classes"] == 1
    assert old_new["old_accuracy"] == report.old_accuracy
    assert old_new["new_accuracy"] == report.new_accuracy
    assert old_new["old_accuracy_change"] == pytest.approx(report.old_accuracy_change)
    assert data["evaluation"]["per_class"].keys() == report.per_class.keys()
    assert data["training"]["history"]["stage1_val_loss"] == [1.1, None]
    assert data["training"]["stages"][1]["evaluation"]["old_accuracy"] == 0.7
    assert data["timings"] == {"train": 1.5, "evaluate": None}
    assert data["extra"]["export"] == str(tmp_path / "saved_models" / "1")
    environment = data["environment"]
    assert environment["versions"]["keras"] == keras.__version__
    assert environment["versions"]["tensorflow"] == tf.__version__
    assert environment["versions"]["tfx_transfer"] == tt.__version__
    assert environment["machine"]["cpu_count"] == os.cpu_count()
    assert isinstance(environment["machine"]["gpus"], list)

    markdown = (run.path / "report.md").read_text()
    assert "| class | group | precision | recall | support |" in markdown
    assert "## Old vs new classes" in markdown and "Change on old classes" in markdown
    assert "![history](plots/history.png)" in markdown
    assert "| stage | epochs | loss |" in markdown


def test_report_without_evaluation_or_history(tmp_path):
    run = RunDirectory(tmp_path, name="run")
    data = json.loads(run.write_report().read_text())
    assert "old_new" not in data and "training" not in data and data["environment"]
    assert "## Environment" in (run.path / "report.md").read_text()


def _event_steps(directory, tag):
    steps = []
    for file in directory.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(file)):
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return sorted(steps)


def test_callbacks_in_fit_write_checkpoints_and_tensorboard_logs(tmp_path):
    run = RunDirectory(tmp_path, name="run")
    model = conv_classifier(3)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, labels = random_images(8), np.arange(8) % 3
    callbacks = run.callbacks(validation=True)
    for _ in range(2):  # two stages: two fit calls with the same callbacks
        model.fit(
            images,
            labels,
            validation_data=(images, labels),
            epochs=1,
            batch_size=4,
            callbacks=callbacks,
            verbose=0,
        )
    assert run.best_checkpoint.is_file() and run.last_checkpoint.is_file()
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["best.keras", "last.keras"]
    last = tt.load_model(run.last_checkpoint)
    np.testing.assert_allclose(last.predict(images, verbose=0), model.predict(images, verbose=0))
    assert _event_steps(run.logs_dir / "train", "epoch_loss") == [0, 1]  # epochs keep counting
    assert _event_steps(run.logs_dir / "validation", "epoch_loss") == [0, 1]


def test_callbacks_save_the_given_model_and_skip_best_without_validation(tmp_path):
    run = RunDirectory(tmp_path, name="run")
    model = conv_classifier(3)
    wrapper = keras.Sequential([keras.Input(model.input_shape[1:]), model], name="wrapper")
    wrapper.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callbacks = run.callbacks(validation=False, model=model, tensorboard=False)
    wrapper.fit(random_images(4), np.arange(4) % 3, epochs=1, callbacks=callbacks, verbose=0)
    assert not run.best_checkpoint.exists() and not run.logs_dir.exists()
    assert tt.load_model(run.last_checkpoint).name == model.name


def test_detection_report_gets_per_class_ap_plot_and_tables(tmp_path):
    report = tt.DetectionReport(
        map=0.4,
        map50=0.6,
        per_class={"car": 0.5, "bus": None, "bike": 0.3},
        per_class50={"car": 0.7, "bus": None, "bike": 0.5},
        class_names=["car", "bus", "bike"],
        num_images=4,
        num_ground_truth=6,
        num_predictions=9,
        old_classes=2,
        old_map=0.5,
        new_map=0.3,
    )
    run = RunDirectory(tmp_path, name="run")
    assert [p.name for p in run.plots(evaluation=report)] == ["per_class.png"]
    data = json.loads(run.write_report(evaluation=report).read_text())
    assert data["old_new"]["old_map"] == 0.5 and data["old_new"]["new_class_names"] == ["bike"]
    assert "| class | group | AP | AP50 |" in (run.path / "report.md").read_text()
