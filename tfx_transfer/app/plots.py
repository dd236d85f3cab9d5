"""PNG plots of a run: training curves, confusion matrix, per-class accuracy old vs new.

Figures are drawn with matplotlib's Agg canvas (headless, no pyplot, so the
backend of a notebook is left alone) and written atomically: a temporary file
in the same directory, then `os.replace`. matplotlib is imported inside the
functions, so `import tfx_transfer` does not load it.

Example:

>>> tt.plots.plot_history(history, "runs/x/plots/history.png")
>>> tt.plots.plot_confusion(report, None, "runs/x/plots/confusion.png")
>>> tt.plots.plot_old_new(report, "runs/x/plots/per_class.png")
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfx_transfer.core.io import write_atomically

# Keys that `tt.fine_tune` adds once per stage (from `tt.evaluate`), not once per epoch.
EVALUATION_KEYS = (
    "old_accuracy",
    "new_accuracy",
    "old_accuracy_change",
    "old_map",
    "new_map",
    "old_map_change",
)
DPI = 100
TRAIN_COLOR, VAL_COLOR = "tab:blue", "tab:orange"
OLD_COLOR, NEW_COLOR = "tab:blue", "tab:orange"

_STAGE_KEY = re.compile(r"stage(\d+)_(.+)")


@dataclasses.dataclass
class StageHistory:
    """One stage of a `tt.fine_tune` history.

    Attributes:
        number: int. The stage number (1-based).
        epochs: dict. Metric name (`loss`, `val_accuracy`, ...) -> one value per epoch.
        evaluation: dict. End-of-stage measurements (`old_accuracy`, ...) -> value.
    """

    number: int
    epochs: dict[str, list[float]]
    evaluation: dict[str, float]

    @property
    def num_epochs(self) -> int:
        return max((len(values) for values in self.epochs.values()), default=0)


def split_history(history: Mapping[str, Sequence[float]] | Any) -> list[StageHistory]:
    """Splits a `tt.fine_tune` history (`stage1_loss`, ...) into its stages.

    A plain Keras history (`model.fit(...).history`, or the `History` object)
    is one stage.

    Example:

    >>> [s.num_epochs for s in split_history({"stage1_loss": [1, 0.5], "stage2_loss": [0.4]})]
    [2, 1]
    """
    history = getattr(history, "history", history)
    if not isinstance(history, Mapping) or not history:
        raise ValueError(f"Expected a non-empty history dict, got {history!r}.")
    staged = {key: _STAGE_KEY.fullmatch(key) for key in history}
    if not any(staged.values()):
        staged = {key: _STAGE_KEY.fullmatch(f"stage1_{key}") for key in history}
    loose = [key for key, match in staged.items() if match is None]
    if loose:
        raise ValueError(
            f"History keys {loose} have no stage prefix while others do (stage1_loss, ...); "
            "pass either a tt.fine_tune history or a plain Keras one."
        )
    stages: dict[int, StageHistory] = {}
    for key, match in staged.items():
        number, name = int(match.group(1)), match.group(2)
        stage = stages.setdefault(number, StageHistory(number, {}, {}))
        values = [float(value) for value in np.ravel(history[key])]
        if name in EVALUATION_KEYS:
            stage.evaluation[name] = values[-1] if values else math.nan
        else:
            stage.epochs[name] = values
    return [stages[number] for number in sorted(stages)]


def plot_history(history: Mapping[str, Sequence[float]] | Any, path: str | os.PathLike) -> Path:
    """Training curves: one panel per metric, train vs validation, stage by stage.

    Stages are separated by dashed vertical lines and labelled; the old- and
    new-class accuracy that `tt.fine_tune` measures after a stage are markers at
    the stage's last epoch on the accuracy panel.

    Args:
        history: dict. A `tt.fine_tune` history (keys `stageN_<metric>`) or a
            plain Keras one (`model.fit(...).history`).
        path: where the PNG goes.

    Example:

    >>> model, history = tt.fine_tune(model, data)
    >>> tt.plots.plot_history(history, "history.png")
    """
    stages = split_history(history)
    metrics = _metric_names(stages)
    evaluated = any(stage.evaluation for stage in stages)
    marker_panel = next((m for m in metrics if m == "accuracy"), None) or next(
        (m for m in metrics if "accuracy" in m), None
    )
    if evaluated and marker_panel is None:
        marker_panel = "old/new-class accuracy"
        metrics.append(marker_panel)
    if not metrics:
        raise ValueError(f"The history has no per-epoch metrics: {list(history)}.")

    figure, axes = _figure_grid(len(metrics))
    starts = np.cumsum([0] + [stage.num_epochs for stage in stages])
    for axis, metric in zip(axes, metrics):
        for stage, start in zip(stages, starts):
            for name, color, label in (
                (metric, TRAIN_COLOR, "train"),
                (f"val_{metric}", VAL_COLOR, "validation"),
            ):
                values = stage.epochs.get(name)
                if values:
                    x = start + np.arange(1, len(values) + 1)
                    axis.plot(x, values, color=color, marker="o", markersize=3, label=label)
            if metric == marker_panel and stage.num_epochs:
                _evaluation_markers(axis, stage, start + stage.num_epochs)
        _stage_separators(axis, stages, starts)
        axis.set(xlabel="epoch", ylabel=metric, title=metric)
        if "learning_rate" in metric:
            axis.set_yscale("log")
        axis.xaxis.get_major_locator().set_params(integer=True)
        _legend(axis)
    for axis in axes[len(metrics) :]:
        axis.set_visible(False)
    figure.suptitle("Training history")
    return _save(figure, path)


def plot_confusion(
    report_or_matrix: Any,
    class_names: Sequence[str] | None,
    path: str | os.PathLike,
    *,
    max_classes: int = 40,
) -> Path:
    """The confusion matrix as a heat map (rows: true class, columns: predicted).

    Colours are the fraction of each true class's images; counts are written in
    the cells when there are few classes. With more than `max_classes` classes,
    only the `max_classes` classes with the most errors (images of the class
    predicted as another, plus images of other classes predicted as it) are
    shown, in their original order.

    Args:
        report_or_matrix: an `EvaluationReport` (its `confusion` and
            `class_names`) or a square matrix, `matrix[true][predicted]` counts.
        class_names: the names of the rows; None: the report's, or "0", "1", ...
        path: where the PNG goes.
        max_classes: int. The most classes shown.

    Example:

    >>> tt.plots.plot_confusion(tt.evaluate(model, test), None, "confusion.png")
    """
    matrix = np.asarray(getattr(report_or_matrix, "confusion", report_or_matrix), np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"A confusion matrix must be square; got shape {matrix.shape}.")
    count = matrix.shape[0]
    if class_names is None:
        class_names = getattr(report_or_matrix, "class_names", None) or [
            str(i) for i in range(count)
        ]
    if len(class_names) != count:
        raise ValueError(f"Got {len(class_names)} class names for a {count}x{count} matrix.")
    if max_classes < 1:
        raise ValueError(f"max_classes must be at least 1; got {max_classes}.")

    errors = matrix.sum(axis=0) + matrix.sum(axis=1) - 2 * np.diag(matrix)
    shown = np.sort(np.argsort(-errors, kind="stable")[:max_classes])
    totals = matrix.sum(axis=1)[shown]
    counts = matrix[np.ix_(shown, shown)]
    fractions = np.divide(
        counts, totals[:, None], out=np.zeros_like(counts), where=totals[:, None] > 0
    )
    names = [str(class_names[i]) for i in shown]
    k = len(shown)

    from matplotlib.figure import Figure

    side = min(max(5.0, 0.28 * k + 2.5), 18.0)
    figure = Figure(figsize=(side + 1.2, side), layout="constrained")
    axis = figure.add_subplot()
    image = axis.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axis, shrink=0.8, label="fraction of the true class")
    font = 9 if k <= 20 else max(6.0, 9 - (k - 20) / 10)
    axis.set_xticks(range(k), names, rotation=90, fontsize=font)
    axis.set_yticks(range(k), names, fontsize=font)
    axis.set(xlabel="predicted class", ylabel="true class")
    if k <= 25:
        for (row, column), value in np.ndenumerate(counts):
            if value:
                color = "white" if fractions[row, column] > 0.5 else "black"
                axis.text(
                    column,
                    row,
                    f"{int(value)}",
                    ha="center",
                    va="center",
                    fontsize=font,
                    color=color,
                )
    title = "Confusion matrix"
    if k < count:
        title += f": the {k} most confused of {count} classes"
    axis.set_title(title)
    return _save(figure, path)


def plot_old_new(
    report: Any,
    path: str | os.PathLike,
    *,
    reference: Any = None,
) -> Path:
    """Per-class accuracy as bars, old classes and new classes in two colours.

    The per-class accuracy is each class's recall (the fraction of its images
    predicted as it); for a `DetectionReport`, the per-class AP. Dashed lines
    mark the old- and new-class accuracy of the report and the reference
    model's old-class accuracy (`reference_old_accuracy`); per-class values of
    the reference model are drawn as black ticks when given.

    Args:
        report: an `EvaluationReport` (or a `DetectionReport`).
        path: where the PNG goes.
        reference: optional per-class values of the reference model: an
            `EvaluationReport` of it (`tt.evaluate(base, old_test)`) or a
            dict class name -> accuracy.

    Example:

    >>> report = tt.evaluate(expanded, test, reference=base)
    >>> tt.plots.plot_old_new(report, "per_class.png", reference=tt.evaluate(base, old_test))
    """
    names = list(report.class_names)
    values, ylabel = _per_class_values(report)
    reference_values = _per_class_values(reference)[0] if hasattr(reference, "per_class") else {}
    if isinstance(reference, Mapping):
        reference_values = {name: float(value) for name, value in reference.items()}
    old = report.old_classes if report.old_classes is not None else len(names)
    count = len(names)

    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    figure = Figure(figsize=(min(max(6.0, 0.16 * count + 2), 24.0), 4.5), layout="constrained")
    axis = figure.add_subplot()
    x = np.arange(count)
    colors = [OLD_COLOR if i < old else NEW_COLOR for i in range(count)]
    axis.bar(x, [values.get(name, math.nan) for name in names], color=colors, width=0.8)
    handles = [Patch(color=OLD_COLOR, label=f"old classes ({old})")]
    if old < count:
        handles.append(Patch(color=NEW_COLOR, label=f"new classes ({count - old})"))
    if reference_values:
        shown = [i for i, name in enumerate(names) if name in reference_values]
        axis.scatter(
            shown,
            [reference_values[names[i]] for i in shown],
            marker="_",
            color="black",
            s=max(20.0, 2000.0 / count),
            zorder=3,
        )
        handles.append(Line2D([], [], marker="_", color="black", ls="", label="reference model"))
    for key, color, style, label in (
        ("old_accuracy", OLD_COLOR, "--", "old-class accuracy"),
        ("new_accuracy", NEW_COLOR, "--", "new-class accuracy"),
        ("reference_old_accuracy", "black", ":", "reference, old classes"),
        ("old_map", OLD_COLOR, "--", "old-class mAP"),
        ("new_map", NEW_COLOR, "--", "new-class mAP"),
    ):
        value = getattr(report, key, None)
        if value is not None and math.isfinite(value):
            axis.axhline(value, color=color, linestyle=style, linewidth=1)
            handles.append(
                Line2D([], [], color=color, linestyle=style, label=f"{label} {value:.3f}")
            )
    axis.set_xticks(x, names, rotation=90, fontsize=8 if count <= 30 else 5)
    axis.set(xlim=(-0.6, count - 0.4), ylim=(0, 1.05), ylabel=ylabel, title=f"Per-class {ylabel}")
    axis.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(figure, path)


def plot_lr_find(result: Any, path: str | os.PathLike) -> Path:
    """`LRFinderResult.plot`, written atomically.

    Example:

    >>> tt.plots.plot_lr_find(tt.lr_find(model, data.train), "lr_find.png")
    """
    return write_atomically(path, result.plot)


def plot_search(
    trials: Sequence[Mapping[str, Any]],
    objective: str,
    keys: Sequence[str],
    path: str | os.PathLike,
) -> Path:
    """A hyperparameter search: the objective by trial, then against each searched key
    (one panel each; the best trial circled).

    Example:

    >>> tt.plots.plot_search(result.trials, "val_accuracy", result.keys, "search.png")
    """
    done = [t for t in trials if t.get(objective) is not None]
    figure, axes = _figure_grid(1 + len(keys))
    best = max(done, key=lambda t: t[objective]) if done else None
    panels = [("trial", [int(t["trial"]) for t in done])]
    panels += [(key, [t.get(key) for t in done]) for key in keys]
    for axis, (name, xs) in zip(axes, panels):
        ys = [t[objective] for t in done]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
        positions = xs if numeric else [sorted(set(map(str, xs))).index(str(x)) for x in xs]
        axis.scatter(positions, ys, color="tab:blue")
        if best is not None:
            index = done.index(best)
            axis.scatter([positions[index]], [ys[index]], s=160, facecolors="none",
                         edgecolors="tab:red", label="best")  # fmt: skip
        if not numeric:
            labels = sorted(set(map(str, xs)))
            axis.set_xticks(range(len(labels)), labels)
        elif name.endswith("learning_rate") and min(xs, default=1) > 0:
            axis.set_xscale("log")
        axis.set_xlabel(name)
        axis.set_ylabel(objective)
        axis.grid(alpha=0.3)
    for axis in axes[len(panels) :]:
        axis.set_visible(False)
    return _save(figure, path)


def _save(figure, path: str | os.PathLike) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    return write_atomically(
        path, lambda temporary: figure.savefig(temporary, format="png", dpi=DPI)
    )


def _metric_names(stages: list[StageHistory]) -> list[str]:
    """Base metric names (no `val_`), loss first, in order of appearance."""
    names: list[str] = []
    for stage in stages:
        for key in stage.epochs:
            name = key.removeprefix("val_")
            if name not in names:
                names.append(name)
    return sorted(names, key=lambda name: name != "loss")


def _figure_grid(panels: int):
    from matplotlib.figure import Figure

    columns = min(max(panels, 1), 3)
    rows = math.ceil(max(panels, 1) / columns)
    figure = Figure(figsize=(5 * columns, 3.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    return figure, list(axes)


def _stage_separators(axis, stages: list[StageHistory], starts) -> None:
    if len(stages) < 2:
        return
    transform = axis.get_xaxis_transform()  # x in data, y in axes coordinates
    for stage, start in zip(stages, starts):
        if start > 0:
            axis.axvline(start + 0.5, color="0.5", linestyle="--", linewidth=1)
        if stage.num_epochs:
            center = start + (stage.num_epochs + 1) / 2
            axis.text(
                center,
                0.98,
                f"stage {stage.number}",
                transform=transform,
                ha="center",
                va="top",
                fontsize=8,
                color="0.35",
            )


def _evaluation_markers(axis, stage: StageHistory, x: int) -> None:
    for key, marker, color, label in (
        ("old_accuracy", "s", "tab:green", "old classes (val)"),
        ("new_accuracy", "^", "tab:red", "new classes (val)"),
    ):
        if key in stage.evaluation:
            axis.plot(
                [x], [stage.evaluation[key]], marker=marker, color=color, linestyle="", label=label
            )


def _legend(axis) -> None:
    """A legend without repeated labels (one line per stage has the same label)."""
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        axis.legend(unique.values(), unique.keys(), fontsize=8)


def _per_class_values(report: Any) -> tuple[dict[str, float], str]:
    """Class name -> accuracy (recall; NaN without images), or -> AP for detection."""
    values: dict[str, float] = {}
    ylabel = "accuracy"
    for name, entry in report.per_class.items():
        if isinstance(entry, Mapping):
            values[name] = float(entry["recall"]) if entry.get("support", 1) else math.nan
        else:
            ylabel = "AP"
            values[name] = math.nan if entry is None else float(entry)
    return values, ylabel
