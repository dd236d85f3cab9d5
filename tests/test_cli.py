"""The `tfx-transfer` command, driven in a subprocess as a user would."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_user_error

import tfx_transfer as tt
from tfx_transfer.app.run_config import load_run_config
from tfx_transfer.data import shapes

PNG = b"\x89PNG\r\n\x1a\n"
CONFIGS = sorted((Path(__file__).parent.parent / "examples" / "configs").glob("*.yaml"))

TINY_CONFIG = """\
model:
  backbone: mobilenet_v3_small
  weights: null
  input_size: 32
  hidden_units: [16]
data:
  source: shapes
  classes: [red_circle, green_square, blue_triangle]
  images_per_class: 6
  image_size: 32
  batch_size: 8
  validation_split: 0.34
fine_tune:
  stages:
    - {train: head, epochs: 1, learning_rate: 0.01}
    - {train: top_blocks, top_blocks: 1, epochs: 1, learning_rate: 0.001}
export:
  directory: saved/tiny
run:
  root: runs
  name: tiny
  lr_find: true
"""


def cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "tfx_transfer.app.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


@pytest.mark.slow
def test_train_writes_the_run_directory_and_exports(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_CONFIG)
    result = cli("train", "tiny.yaml", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "tiny"
    assert "run directory: runs/tiny" in result.stdout
    report = json.loads((run / "report.json").read_text())
    assert report["summary"]["num_images"] == 6 and 0 <= report["summary"]["top1"] <= 1
    rows = (run / "history.csv").read_text().splitlines()
    assert rows[0].startswith("stage,epoch") and [r[0] for r in rows[1:]] == ["1", "2"]
    assert report["extra"]["lr_find_suggestion"] > 0
    for name in ("history", "confusion", "per_class", "lr_find"):
        assert (run / "plots" / f"{name}.png").read_bytes()[:8] == PNG
    assert (run / "checkpoints" / "best.keras").is_file()
    assert list((run / "logs" / "train").iterdir())  # TensorBoard events
    assert load_run_config(run / "config.yaml").data.classes == (
        "red_circle",
        "green_square",
        "blue_triangle",
    )
    labels = (tmp_path / "saved" / "tiny" / "1" / "assets" / "labels.txt").read_text().split()
    assert labels == ["red_circle", "green_square", "blue_triangle"]
    model = tt.load_model(run / "model.keras")
    assert tt.class_info(model).class_names == tuple(labels)


DETECTOR_CONFIG = """\
model:
  detector: faster_rcnn
  backbone: mobilenet_v3_small
  weights: null
  input_size: 64
data:
  source: synthetic_detection
  classes: [red_circle, green_square]
  num_images: 8
  image_size: 64
  batch_size: 4
  validation_split: 0.25
fine_tune:
  stages:
    - {train: head, epochs: 1, learning_rate: 0.001}
export:
  directory: saved/frcnn
run:
  root: runs
  name: frcnn
"""


@pytest.mark.slow
def test_train_a_faster_rcnn_from_yaml_reports_map_and_exports(tmp_path, in_process):
    (tmp_path / "frcnn.yaml").write_text(DETECTOR_CONFIG)
    result = in_process("train", "frcnn.yaml", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "frcnn" / "report.json").read_text())["summary"]
    assert summary["num_images"] == 2 and 0 <= summary["map50"] <= 1
    labels = (tmp_path / "saved" / "frcnn" / "1" / "assets" / "labels.txt").read_text().split()
    assert labels == ["red_circle", "green_square"]
    model = tt.load_model(tmp_path / "runs" / "frcnn" / "model.keras")
    assert isinstance(model, tt.detection.TransferFasterRCNN)
    assert model.get_layer("box_classifier").kernel.shape == (1024, 3)


@pytest.mark.parametrize(
    "change, fragments",
    [
        (("  image_size: 32\n", "  image_size: 32\n  colour: red\n"), ["line 11", "data.colour"]),
        (("epochs: 1, learning", "epochs: one, learning"), ["line 15", "expected an integer"]),
        (("source: shapes", "source: folder"), ["line 7", "data.source", "image_folder"]),
        (("{train: head,", "{train: neck,"), ["line 15", "train='neck'", "'head'"]),
        (("model:\n", "model:\n  load: base\n"), ["exactly one of model.load"]),
    ],
)
def test_bad_configs_name_the_line_and_key_without_a_traceback(
    tmp_path, in_process, change, fragments
):
    (tmp_path / "bad.yaml").write_text(TINY_CONFIG.replace(*change))
    assert_user_error(in_process("train", "bad.yaml"), "bad.yaml", *fragments)


def test_missing_config_and_missing_files(tmp_path):
    assert_user_error(cli("train", "nowhere.yaml", cwd=tmp_path), "Config file not found")
    assert_user_error(
        cli("export", "nowhere.keras", "out", cwd=tmp_path), "Model file not found", status=1
    )


def test_every_example_config_is_valid():
    assert len(CONFIGS) >= 4
    for path in CONFIGS:
        load_run_config(path)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    shapes.write_image_folder(root / "new", shapes.NOVEL_CLASSES, 3, image_size=64)
    shapes.write_image_folder(
        root / "mixed", (*shapes.BASE_CLASSES[:2], *shapes.NOVEL_CLASSES), 2, image_size=64
    )
    return root


@pytest.mark.slow
def test_expand_evaluate_export_predict_lr_find(workspace):
    result = cli(
        "expand", "base", "expanded.keras", "--new-classes", "blue_crescent,red_arrow",
        "--init", "imprint", "--examples", "new", "--freeze-old", cwd=workspace,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "92 classes (kernel (1024, 92))" in result.stdout

    result = cli(
        "evaluate", "expanded.keras", "mixed", "--reference", "base", "--json", "report.json",
        cwd=workspace,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((workspace / "report.json").read_text())
    assert report["num_images"] == 8 and report["old_classes"] == 90
    assert 0 <= report["old_accuracy"] <= 1 and 0 <= report["new_accuracy"] <= 1

    result = cli("export", "expanded.keras", "saved", "--version", "7", cwd=workspace)
    assert result.returncode == 0, result.stderr[-2000:]
    labels = (workspace / "saved" / "7" / "assets" / "labels.txt").read_text().split()
    assert labels[-2:] == ["blue_crescent", "red_arrow"] and len(labels) == 92

    image = sorted((workspace / "new" / "red_arrow").iterdir())[0]
    result = cli("predict", "expanded.keras", image, "--top-k", "2", cwd=workspace)
    assert result.returncode == 0, result.stderr[-2000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["image"] == str(image) and len(line["top"]) == 2
    assert line["top"][0][0] == "red_arrow"  # imprinted from this very image's class

    result = cli("lr-find", "expanded.keras", "mixed", "--steps", "4", cwd=workspace)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "suggested learning rate" in result.stdout
    assert (workspace / "lr_find.png").read_bytes()[:8] == PNG


def test_imprint_without_examples_is_a_user_error(in_process):
    result = in_process("expand", "base", "x.keras", "--new-classes", "kite", "--init", "imprint")
    assert_user_error(result, "--init imprint needs --examples", status=1)


def test_backbones_table_and_version(tmp_path, in_process):
    result = in_process("backbones")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = result.stdout.strip().splitlines()
    assert rows[0].split()[:4] == ["name", "default", "min", "params"]
    assert len(rows) == 1 + len(tt.list_backbones())
    assert rows[1].split()[:4] == ["vgg16", "224", "32", "14.7M"]
    inception = next(row.split() for row in rows if row.startswith("inception_v3 "))
    assert inception[1:5] == ["299", "75", "21.8M", "no"]
    version = cli("--version", cwd=tmp_path)
    assert version.stdout.strip() == f"tfx-transfer {tt.__version__}"
