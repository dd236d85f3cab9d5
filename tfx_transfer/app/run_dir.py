"""`RunDirectory`: the folder a training run writes (config, history, logs,
checkpoints, report, plots).

```
runs/<name or YYYYmmdd-HHMMSS>/
  config.yaml            the resolved configuration
  history.csv            one row per epoch: stage, epoch, metrics
  logs/                  TensorBoard (train/, validation/)
  checkpoints/best.keras the best model on val_loss; last.keras the latest
  plots/*.png            history, confusion, per_class
  report.json            metrics, per-class, old vs new, timings, environment
  report.md              the same for people
```

Every file is written atomically (a temporary file, then `os.replace`), so a
killed run never leaves half a file behind.

Example:

>>> run = tt.RunDirectory("runs")                     # runs/20250101-120000/
>>> run.write_config(config)
>>> model, history = tt.fine_tune(model, data, callbacks=run.callbacks(model=model))
>>> report = tt.evaluate(model, test, reference=base)
>>> run.history_csv(history)
>>> run.plots(history=history, evaluation=report)
>>> run.write_report(evaluation=report, history=history, timings={"train": 81.2})
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import io
import json
import math
import os
import platform
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tfx_transfer.app import plots as _plots
from tfx_transfer.app.plots import split_history
from tfx_transfer.core.io import publish, write_atomically


class RunDirectory:
    """The directory of one run: `<root>/<name>`, created on construction.

    Args:
        root: str or Path. The parent directory (e.g. "runs").
        name: str. The run's name; default the local time, `YYYYmmdd-HHMMSS`
            (with `-2`, `-3`, ... if that exists already). A given name may
            exist already: a resumed run keeps writing to it.

    Example:

    >>> run = tt.RunDirectory("runs", name="shapes92")
    >>> run.path
    PosixPath('runs/shapes92')
    """

    def __init__(self, root: str | os.PathLike = "runs", name: str | None = None) -> None:
        root = Path(root)
        if name is not None:
            if not name or Path(name).name != name or name in (".", ".."):
                raise ValueError(f"A run name must be one plain directory name; got {name!r}.")
            self.path = root / name
            self.path.mkdir(parents=True, exist_ok=True)
        else:
            self.path = _new_timestamped(root)
        self.name = self.path.name
        self.created = datetime.now().astimezone()
        self._started = time.monotonic()

    # Paths ---------------------------------------------------------------------------------

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints_dir / "best.keras"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints_dir / "last.keras"

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    # Files ---------------------------------------------------------------------------------

    def write_config(self, config: Mapping[str, Any] | Any) -> Path:
        """Writes the resolved configuration as `config.yaml` (`yaml.safe_dump`).

        Dataclasses (e.g. `FineTuneConfig`, `Stage`), tuples, paths, enums and
        numpy scalars become plain YAML; anything else is an error naming its key.

        Example:

        >>> run.write_config({"model": {"backbone": "resnet50"}, "epochs": 5})
        PosixPath('runs/.../config.yaml')
        """
        import yaml

        text = yaml.safe_dump(_plain(config, "config"), sort_keys=False, allow_unicode=True)
        return _write_text(self.path / "config.yaml", text)

    def history_csv(self, history: Mapping[str, Sequence[float]] | Any) -> Path:
        """Writes `history.csv`: one row per epoch with columns `stage`, `epoch`
        (within the stage, from 1), `global_epoch` and every metric (empty where
        a stage lacks it). The end-of-stage `old_accuracy`, `new_accuracy`
        and `old_accuracy_change` of `tt.fine_tune` are on the stage's last row.

        Example:

        >>> run.history_csv({"stage1_loss": [0.9, 0.5], "stage2_loss": [0.4]})
        PosixPath('runs/.../history.csv')
        """
        stages = split_history(history)
        columns: list[str] = []
        for stage in stages:
            for name in [*stage.epochs, *stage.evaluation]:
                if name not in columns:
                    columns.append(name)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["stage", "epoch", "global_epoch", *columns])
        global_epoch = 0
        for stage in stages:
            for epoch in range(stage.num_epochs):
                global_epoch += 1
                last = epoch == stage.num_epochs - 1
                row = [stage.number, epoch + 1, global_epoch]
                for name in columns:
                    values = stage.epochs.get(name, [])
                    if epoch < len(values):
                        row.append(repr(values[epoch]))
                    elif last and name in stage.evaluation:
                        row.append(repr(stage.evaluation[name]))
                    else:
                        row.append("")
                writer.writerow(row)
        return _write_text(self.path / "history.csv", buffer.getvalue())

    def callbacks(
        self,
        *,
        validation: bool = True,
        model: keras.Model | None = None,
        monitor: str = "val_loss",
        tensorboard: bool = True,
    ) -> list[keras.callbacks.Callback]:
        """Keras callbacks for `fit` (or `tt.fine_tune(..., callbacks=...)`):

        - TensorBoard logs in `logs/` (`keras.callbacks.TensorBoard`), with
          epochs counting on across the `fit` calls of a staged fine-tuning;
        - `checkpoints/best.keras`: `ModelCheckpoint(save_best_only=True)` on
          `monitor`, only with validation data; the best is kept across stages;
        - `checkpoints/last.keras`: the model after the latest epoch.

        Checkpoints are written to a temporary file and renamed.

        Args:
            validation: bool. Whether `fit` gets validation data (else no best checkpoint).
            model: keras.Model. The model the checkpoints save; default the model
                being fit. Pass yours to `tt.fine_tune`, which may fit a wrapper of
                it (augmentation layers) or its head alone (cached features).
            monitor: str. The quantity of the best checkpoint (mode inferred).
            tensorboard: bool. Whether to write TensorBoard logs.

        Example:

        >>> model.fit(train, validation_data=val, epochs=5, callbacks=run.callbacks())
        """
        callbacks: list[keras.callbacks.Callback] = []
        if tensorboard:
            callbacks.append(_StagedTensorBoard(self.logs_dir))
        if validation:
            callbacks.append(
                _AtomicCheckpoint(self.best_checkpoint, model, monitor=monitor, save_best_only=True)
            )
        callbacks.append(_AtomicCheckpoint(self.last_checkpoint, model))
        return callbacks

    def plots(
        self,
        *,
        history: Mapping[str, Sequence[float]] | Any = None,
        evaluation: Any = None,
        reference: Any = None,
        max_classes: int = 40,
    ) -> list[Path]:
        """Writes `plots/history.png` (from a history), `plots/confusion.png` and
        `plots/per_class.png` (old vs new, from an `EvaluationReport`; a
        `DetectionReport` gets only the per-class AP). `reference` is passed to
        `tt.plots.plot_old_new`. Returns the paths written.

        Example:

        >>> run.plots(history=history, evaluation=report)
        [PosixPath('runs/.../plots/history.png'), ...]
        """
        written = []
        if history is not None:
            written.append(_plots.plot_history(history, self.plots_dir / "history.png"))
        if evaluation is not None:
            if getattr(evaluation, "confusion", None) is not None:
                written.append(
                    _plots.plot_confusion(
                        evaluation, None, self.plots_dir / "confusion.png", max_classes=max_classes
                    )
                )
            written.append(
                _plots.plot_old_new(
                    evaluation, self.plots_dir / "per_class.png", reference=reference
                )
            )
        return written

    def write_report(
        self,
        *,
        evaluation: Any = None,
        history: Mapping[str, Sequence[float]] | Any = None,
        timings: Mapping[str, float] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Path:
        """Writes `report.json` and `report.md`; returns the path of `report.json`.

        The JSON holds `run` (name, path, created, elapsed seconds),
        `evaluation` (the report's `to_dict()`: metrics, per-class, confusion),
        `summary` (its headline numbers), `old_new` (old/new-class accuracy and
        the change against the reference model, when the report has old
        classes), `training` (per stage: epochs, last values, end-of-stage
        evaluation; and the full history), `timings` (seconds), `environment`
        (python, tensorflow, keras, tfx_transfer versions; platform, CPU count,
        GPUs) and `extra`. NaN and infinities are written as null.

        Args:
            evaluation: an `EvaluationReport` or `DetectionReport`.
            history: a `tt.fine_tune` (or Keras) history.
            timings: dict step -> seconds.
            extra: anything else JSON can hold (paths of exports, ...).

        Example:

        >>> run.write_report(evaluation=report, history=history, timings={"train": 81.2})
        PosixPath('runs/.../report.json')
        """
        report: dict[str, Any] = {
            "run": {
                "name": self.name,
                "path": str(self.path),
                "created": self.created.isoformat(timespec="seconds"),
                "elapsed_seconds": round(time.monotonic() - self._started, 3),
            }
        }
        if evaluation is not None:
            report["summary"] = evaluation.summary()
            old_new = _old_new(evaluation)
            if old_new:
                report["old_new"] = old_new
            report["evaluation"] = evaluation.to_dict()
        if history is not None:
            report["training"] = {
                "stages": [
                    {
                        "stage": stage.number,
                        "epochs": stage.num_epochs,
                        "last": {
                            name: values[-1] for name, values in stage.epochs.items() if values
                        },
                        "evaluation": stage.evaluation,
                    }
                    for stage in split_history(history)
                ],
                "history": dict(getattr(history, "history", history)),
            }
        report["timings"] = dict(timings or {})
        report["environment"] = environment()
        if extra:
            report["extra"] = dict(extra)
        report = _json_safe(report)
        _write_text(self.path / "report.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
        _write_text(self.path / "report.md", self._markdown(report, evaluation))
        return self.path / "report.json"

    def _markdown(self, report: dict[str, Any], evaluation: Any) -> str:
        run = report["run"]
        lines = [f"# Run {run['name']}", "", f"Created {run['created']} in `{run['path']}`.", ""]
        if "summary" in report:
            lines += ["## Metrics", "", *_table(["metric", "value"], report["summary"].items())]
        if "old_new" in report:
            lines += ["## Old vs new classes", "", *_old_new_markdown(report["old_new"])]
        if "training" in report:
            lines += ["## Training", "", *_training_markdown(report["training"]["stages"])]
        if evaluation is not None:
            lines += ["## Per class", "", *_per_class_markdown(evaluation)]
        if report["timings"]:
            lines += ["## Timings", "", *_table(["step", "seconds"], report["timings"].items())]
        pictures = sorted(self.plots_dir.glob("*.png")) if self.plots_dir.is_dir() else []
        if pictures:
            lines += ["## Plots", ""]
            lines += [f"![{p.stem}](plots/{p.name})" for p in pictures] + [""]
        if "extra" in report:
            lines += ["## Extra", "", "```json", json.dumps(report["extra"], indent=2), "```", ""]
        lines += ["## Environment", "", *_table(["key", "value"], _flatten(report["environment"]))]
        return "\n".join(lines)


def environment() -> dict[str, Any]:
    """Versions and machine: python, tensorflow, keras, tfx_transfer, numpy;
    platform, CPU count (and CPUs this process may use), GPUs.

    Example:

    >>> tt.run_dir.environment()["versions"]["keras"]
    '3.15.1'
    """
    import tensorflow as tf

    import tfx_transfer

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = {}
        try:
            details = tf.config.experimental.get_device_details(device)
        except (ValueError, RuntimeError):
            pass
        gpus.append({"name": device.name, **{k: str(v) for k, v in details.items()}})
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "tfx_transfer": tfx_transfer.__version__,
            "numpy": np.__version__,
        },
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "usable_cpus": usable,
            "gpus": gpus,
        },
    }


# Callbacks -----------------------------------------------------------------------------------


class _AtomicCheckpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` that saves `model` (default the model being fit) to a
    temporary `.keras` file and renames it to `path`."""

    def __init__(self, path: Path, model: keras.Model | None = None, **kwargs: Any) -> None:
        self.final_path = Path(path)
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.final_path.with_name(f".{self.final_path.stem}.partial.keras")
        super().__init__(str(temporary), **kwargs)
        self.saved_model = model

    def set_model(self, model: keras.Model) -> None:
        super().set_model(self.saved_model if self.saved_model is not None else model)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        Path(self.filepath).unlink(missing_ok=True)  # a leftover of a killed save
        super().on_epoch_end(epoch, logs)
        if os.path.exists(self.filepath):
            publish(self.filepath, self.final_path)


class _StagedTensorBoard(keras.callbacks.TensorBoard):
    """Keras' `TensorBoard` callback whose epochs keep counting over several
    `fit` calls (the stages of `tt.fine_tune`) instead of starting again at 0."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__(log_dir=str(log_dir))
        self.epochs_before = 0  # epochs finished in earlier fit calls
        self.epochs_seen = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        self.epochs_before = self.epochs_seen

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs_seen = self.epochs_before + epoch + 1
        super().on_epoch_end(self.epochs_before + epoch, logs)


# Helpers -------------------------------------------------------------------------------------


def _new_timestamped(root: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    for suffix in ["", *(f"-{i}" for i in range(2, 1000))]:
        path = root / f"{stamp}{suffix}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a new run directory for {stamp} under {root}.")


def _write_text(path: Path, text: str) -> Path:
    return write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def _plain(value: Any, where: str) -> Any:
    """`value` as YAML-safe plain data; `where` names it in errors."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): _plain(item, f"{where}[{key!r}]") for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, enum.Enum):
        return _plain(value.value, where)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(
        f"{where} is a {type(value).__name__}, which a YAML config cannot hold; "
        "give its name or its settings as plain values."
    )


def _json_safe(value: Any) -> Any:
    """Plain JSON data: NaN and infinities -> None, numpy -> Python, tuples -> lists."""
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _old_new(evaluation: Any) -> dict[str, Any]:
    old = getattr(evaluation, "old_classes", None)
    if old is None:
        return {}
    names = list(evaluation.class_names)
    keys = [key for key in evaluation.summary() if key.startswith(("old_", "new_", "reference_"))]
    return {
        "old_classes": old,
        "new_classes": len(names) - old,
        "new_class_names": names[old:],
        **{key: getattr(evaluation, key) for key in keys},
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")


def _table(header: Sequence[str], rows: Any) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _old_new_markdown(old_new: dict[str, Any]) -> list[str]:
    if "old_accuracy" not in old_new:  # a DetectionReport: mAP
        rows = [(key, old_new.get(key)) for key in old_new if key.endswith(("map", "map50"))]
        return _table(["metric", "value"], rows)
    header = [
        "",
        f"old classes ({old_new['old_classes']})",
        f"new classes ({old_new['new_classes']})",
    ]
    rows = [
        ("model", old_new.get("old_accuracy"), old_new.get("new_accuracy")),
        ("reference model", old_new.get("reference_old_accuracy"), None),
    ]
    lines = _table(header, rows)
    change = old_new.get("old_accuracy_change")
    if change is not None:
        lines += [f"Change on old classes: {100 * change:+.1f} points.", ""]
    return lines


def _training_markdown(stages: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for stage in stages:
        for name in [*stage["last"], *stage["evaluation"]]:
            if name not in names:
                names.append(name)
    rows = [
        (
            stage["stage"],
            stage["epochs"],
            *({**stage["last"], **stage["evaluation"]}.get(n) for n in names),
        )
        for stage in stages
    ]
    return [
        *_table(["stage", "epochs", *names], rows)[:-1],
        "",
        "Last epoch of each stage; full history in `history.csv`.",
        "",
    ]


def _per_class_markdown(evaluation: Any) -> list[str]:
    old = getattr(evaluation, "old_classes", None)
    group = (lambda i: "old" if i < old else "new") if old is not None else (lambda i: "")
    rows = []
    for i, (name, entry) in enumerate(evaluation.per_class.items()):
        if isinstance(entry, Mapping):
            rows.append((name, group(i), entry["precision"], entry["recall"], entry["support"]))
        else:
            rows.append((name, group(i), entry, evaluation.per_class50.get(name)))
    if rows and len(rows[0]) == 5:
        return _table(["class", "group", "precision", "recall", "support"], rows)
    return _table(["class", "group", "AP", "AP50"], rows)


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            rows += _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, list):
            rows.append(
                (
                    f"{prefix}{key}",
                    ", ".join(
                        str(v.get("name", v)) if isinstance(v, Mapping) else str(v) for v in value
                    )
                    or "none",
                )
            )
        else:
            rows.append((f"{prefix}{key}", value))
    return rows
