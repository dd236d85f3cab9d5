"""What a search leaves behind: the trials as CSV and Markdown, the best trial's run
config as YAML (`tfx-transfer train` runs it as it is) and a plot."""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Any

import yaml

from tfx_transfer.app.plots import plot_search
from tfx_transfer.app.run_config import RunConfig
from tfx_transfer.core.io import write_atomically


@dataclasses.dataclass
class TuneResult:
    """The trials of a search and its best run config.

    Attributes:
        directory: the search's directory (KerasTuner's trials, and the files below).
        objective: str. The objective's name (higher is better).
        keys: the searched config keys.
        trials: one dict per trial, best first: "trial" (id), "status", the objective,
            "val_loss" (the last stage's last) and each key's value.
        best_trial: str. The best trial's id.
        best_value: float. Its objective.
        best_config: `RunConfig`. Its run config.
        best_yaml, csv, markdown, plot: the files written.

    Example:

    >>> result = tt.tune(config, max_trials=3)
    >>> result.best_config.fine_tune.stages[0].learning_rate
    0.0031
    """

    directory: Path
    objective: str
    keys: list[str]
    trials: list[dict[str, Any]]
    best_trial: str
    best_value: float
    best_config: RunConfig
    best_yaml: Path
    csv: Path
    markdown: Path
    plot: Path

    def table(self) -> str:
        """The trials as a Markdown table, best first."""
        return self.markdown.read_text(encoding="utf-8")


def write_results(tuner, parameters, objective: str) -> TuneResult:
    """Writes trials.csv, trials.md, best.yaml and search.png into the tuner's project
    directory and returns them with the trials.

    Example:

    >>> write_results(tuner, parameters, "val_accuracy").best_yaml.name
    'best.yaml'
    """
    directory = Path(tuner.project_dir)
    keys = [parameter.key for parameter in parameters]
    trials = []
    for trial in tuner.oracle.trials.values():
        values = trial.hyperparameters.values
        trials.append(
            {
                "trial": trial.trial_id,
                "status": str(trial.status),
                objective: trial.score,
                "val_loss": _metric(trial, "val_loss"),
                **{key: values.get(key) for key in keys},
            }
        )
    ranked = sorted(trials, key=lambda t: (t[objective] is None, -(t[objective] or 0.0)))
    best_trials = tuner.oracle.get_best_trials(1)
    if not best_trials:
        raise RuntimeError(f"The search in {directory} finished no trial; see its trial_* logs.")
    best = best_trials[0]
    best_config = tuner.trial_config(best.hyperparameters)
    columns = ["trial", "status", objective, "val_loss", *keys]
    csv_path = write_atomically(
        directory / "trials.csv", lambda path: path.write_text(_csv(ranked, columns))
    )
    markdown = write_atomically(
        directory / "trials.md", lambda path: path.write_text(_markdown(ranked, columns))
    )
    best_yaml = write_atomically(
        directory / "best.yaml",
        lambda path: path.write_text(
            f"# Best trial {best.trial_id} of the search in {directory}: "
            f"{objective} = {best.score:.6f}\n"
            + yaml.safe_dump(best_config.to_dict(), sort_keys=False)
        ),
    )
    plot = plot_search(trials, objective, keys, directory / "search.png")
    return TuneResult(
        directory=directory,
        objective=objective,
        keys=keys,
        trials=ranked,
        best_trial=best.trial_id,
        best_value=float(best.score),
        best_config=best_config,
        best_yaml=best_yaml,
        csv=csv_path,
        markdown=markdown,
        plot=plot,
    )


def _metric(trial, name: str) -> float | None:
    """A metric a trial reported (None for trials that did not finish)."""
    if not trial.metrics.exists(name):
        return None
    return float(trial.metrics.get_last_value(name))


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(column)) for column in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
