"""`tt.tune`: a KerasTuner search over a run config's fine-tuning choices.

Each trial is the run config with the trial's hyperparameters set (see
`space.py`), trained exactly as `tfx-transfer train` trains it (the same
`runner.train_model`, the same seed), and scored on the validation split:
"val_accuracy" (classifiers' top-1), "val_map" (detectors' COCO mAP) or
"old_new_balance" (an expanded classifier's mean of old- and new-class
accuracy, minus 10 x the old-class drop beyond `max_forgetting`). So the best
trial's YAML, trained again, gives the same validation figure.

KerasTuner keeps every trial in `directory/name/`; a search started again
with the same directory resumes (finished trials are kept, the interrupted
one runs again). With `KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP` and
`KERASTUNER_ORACLE_PORT` set, the same call runs as KerasTuner's chief (the
oracle, which waits for the trials) or as one of its workers.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from tfx_transfer.app.run_config import ConfigError, RunConfig, TuneConfig, load_run_config
from tfx_transfer.app.runner import load_seeded_data, split_data, train_model
from tfx_transfer.app.tuning.results import TuneResult, write_results
from tfx_transfer.app.tuning.space import Parameter, apply_values, parse_space
from tfx_transfer.evaluation import evaluate
from tfx_transfer.training.feature_cache import reuse_cached_features

FORGETTING_PENALTY = 10.0
EPOCHS_KEY = "tuner/epochs"  # Hyperband's epoch budget of a trial
VAL_LOSS = "val_loss"
ZERO_SEED = 2**31 - 1  # the oracle's seed for data.seed 0


def tune(
    base: RunConfig | str | os.PathLike,
    train: Any = None,
    validation: Any = None,
    *,
    space: Mapping[str, Any] | None = None,
    algorithm: str | None = None,
    max_trials: int | None = None,
    objective: str | None = None,
    directory: str | os.PathLike | None = None,
    **options: Any,
) -> TuneResult | None:
    """Searches fine-tuning hyperparameters of a run config with KerasTuner.

    Args:
        base: a `RunConfig` (or the path of its YAML) whose `tune` section, if
            any, gives the defaults of the arguments below.
        train, validation: the data, if not the config's own: a data object
            (`tt.data.image_folder(...)`, `synthetic_detection(...)`) as
            `train` (its validation split is used), or two tf.data datasets.
            Trials then read the same data sets one after the other, so their
            shuffling continues from trial to trial: only the config's own data
            (loaded afresh per trial) makes `best.yaml` reproduce a trial exactly.
        space: dotted config keys -> ranges, e.g.
            `{"fine_tune.stages.0.learning_rate": {"min": 1e-4, "max": 1e-2,
            "sampling": "log"}, "fine_tune.stages.1.top_blocks": {"values": [1, 2]}}`.
        algorithm: "random", "bayesian" or "hyperband".
        max_trials: int.
        objective: "val_accuracy", "val_map" or "old_new_balance".
        directory: where trials and results go (`directory/name/`).
        **options: the other `TuneConfig` fields (`name`, `patience`,
            `max_forgetting`, `overwrite`).

    Returns:
        A `TuneResult` (trials, best config and the files written: trials.csv,
        trials.md, best.yaml, plots), or None in a distributed worker.

    Example:

    >>> result = tt.tune("examples/configs/tune_expand_90_to_92.yaml", max_trials=3)
    >>> print(result.table())
    >>> result.best_yaml          # `tfx-transfer train` runs it as it is
    PosixPath('tuning/expand_90_to_92/best.yaml')
    """
    config = load_run_config(base) if not isinstance(base, RunConfig) else base
    settings = _settings(config, space, algorithm, max_trials, objective, directory, options)
    base_config = dataclasses.replace(config, tune=None)
    parameters = parse_space(settings.space, base_config)
    objective_name = settings.objective or ("val_map" if config.data.detection else "val_accuracy")
    if objective_name == "val_map" and not config.data.detection:
        raise ConfigError("objective='val_map' is for detectors; use 'val_accuracy'.")
    if objective_name == "old_new_balance" and (config.expand is None or config.data.detection):
        raise ConfigError(
            "objective='old_new_balance' needs an expanded classifier (an `expand` section)."
        )
    tuner = FineTuneTuner(
        base_config,
        parameters,
        objective_name,
        settings,
        data=_data(train, validation),
        oracle=_oracle(settings, objective_name, base_config),
        directory=str(settings.directory),
        project_name=settings.name,
        overwrite=settings.overwrite,
    )
    with reuse_cached_features():
        tuner.search(verbose=0)
    if tuner.is_worker:
        return None
    return write_results(tuner, parameters, objective_name)


class _Space(kt.HyperModel):
    """Declares the search space; the trials train in `FineTuneTuner.run_trial`."""

    def __init__(self, parameters: list[Parameter]) -> None:
        super().__init__(name="fine_tune_space")
        self.parameters = parameters

    def build(self, hp: kt.HyperParameters) -> None:
        for parameter in self.parameters:
            parameter.register(hp)


class FineTuneTuner(kt.Tuner):
    """KerasTuner's `Tuner` whose trial is a run config trained by `runner.train_model`."""

    def __init__(self, base, parameters, objective_name, settings, *, data, **kwargs) -> None:
        self.base = base
        self.parameters = parameters
        self.objective_name = objective_name
        self.settings = settings
        self._data = data
        super().__init__(hypermodel=_Space(parameters), **kwargs)

    @property
    def is_worker(self) -> bool:
        return self._is_worker()

    def trial_config(self, hyperparameters: kt.HyperParameters) -> RunConfig:
        """The run config of a trial: the base with the trial's values, early stopping on,
        and no checkpoint directory of its own."""
        values = {p.key: hyperparameters.get(p.key) for p in self.parameters}
        config = apply_values(self.base, values)
        stages = tuple(
            dataclasses.replace(
                stage,
                early_stopping_patience=stage.early_stopping_patience or self.settings.patience,
                epochs=_budget(hyperparameters, stage.epochs),
            )
            for stage in config.fine_tune.stages
        )
        # No configured checkpoint directory: each trial has its own (and `tfx-transfer
        # train` of the best config its run directory's), never one shared with other runs.
        fine_tune = dataclasses.replace(config.fine_tune, stages=stages, checkpoint_dir=None)
        return dataclasses.replace(config, fine_tune=fine_tune)

    def run_trial(self, trial, *args, **kwargs) -> dict[str, float]:
        keras.backend.clear_session()  # frees the previous trial's models
        config = self.trial_config(trial.hyperparameters)
        data = self._data_for(config)
        # A checkpoint directory, as `tfx-transfer train` has: a trial interrupted by a kill
        # resumes from its last epoch, and the data passes are counted the same way.
        state = Path(self.get_trial_dir(trial.trial_id)) / "state"
        trained = train_model(config, data, checkpoint_dir=str(state), verbose=0)
        objective = score(trained, config, self.objective_name, self.settings)
        return {self.objective_name: objective, VAL_LOSS: final_val_loss(trained.history)}

    def _data_for(self, config: RunConfig) -> Any:
        """The given data, or the trial config's, loaded afresh as `tfx-transfer train`
        loads it (a data set read before has its shuffling further on)."""
        return self._data if self._data is not None else load_seeded_data(config)

    def save_model(self, trial_id, model, step=0) -> None:  # the trials keep no models
        return None


def score(trained, config: RunConfig, objective: str, settings: TuneConfig) -> float:
    """The trial's objective on the validation split (the report `tfx-transfer train`
    writes for a config without a test split has the same figure).

    Example:

    >>> score(train_model(config, data, verbose=0), config, "val_accuracy", config.tune)
    0.8125
    """
    data = trained.data
    if data.validation is None:
        raise ValueError("Tuning needs validation data: set data.validation_split.")
    report = evaluate(trained.model, split_data(data, data.validation), reference=trained.teacher)
    if objective == "val_map":
        return float(report.map)
    if objective == "old_new_balance":
        old, new = report.old_accuracy or 0.0, report.new_accuracy or 0.0
        drop = -(report.old_accuracy_change or 0.0)
        return 0.5 * (old + new) - FORGETTING_PENALTY * max(0.0, drop - settings.max_forgetting)
    return float(report.top1)


def final_val_loss(history: Mapping[str, list[float]]) -> float:
    """The last stage's last validation loss (trials record it next to the objective).

    Example:

    >>> final_val_loss({"stage1_val_loss": [0.9, 0.7], "stage2_val_loss": [0.6, 0.5]})
    0.5
    """
    stages = sorted(
        (int(key.split("_")[0].removeprefix("stage")), values)
        for key, values in history.items()
        if key.startswith("stage") and key.endswith("_val_loss") and values
    )
    return float(stages[-1][1][-1]) if stages else float("nan")


def _budget(hyperparameters: kt.HyperParameters, epochs: int) -> int:
    """Hyperband's epoch budget for the trial (each stage at most that long)."""
    if EPOCHS_KEY in hyperparameters.values:
        return max(1, min(epochs, int(hyperparameters.get(EPOCHS_KEY))))
    return epochs


def _settings(config, space, algorithm, max_trials, objective, directory, options) -> TuneConfig:
    given = {
        "space": space,
        "algorithm": algorithm,
        "max_trials": max_trials,
        "objective": objective,
        "directory": str(directory) if directory is not None else None,
        **options,
    }
    given = {key: value for key, value in given.items() if value is not None}
    if config.tune is None and "space" not in given:
        raise ConfigError("tune needs a search space: space={...} or a `tune.space` section.")
    try:
        if config.tune is not None:
            return dataclasses.replace(config.tune, **given)
        return TuneConfig(**given)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"tune: {error}") from None


def _data(train: Any, validation: Any) -> Any:
    if train is None:
        return None
    if validation is None:
        return train
    return _Splits(train, validation)


@dataclasses.dataclass
class _Splits:
    """Two tf.data datasets in the shape of a data object."""

    train: Any
    validation: Any
    test: Any = None
    skipped: tuple = ()


def _oracle(settings: TuneConfig, objective: str, base: RunConfig) -> kt.Oracle:
    goal = kt.Objective(objective, "max")
    seed = base.data.seed or ZERO_SEED  # KerasTuner takes a seed of 0 as "no seed"
    if settings.algorithm == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(
            goal, max_trials=settings.max_trials, num_initial_points=2, seed=seed
        )
    if settings.algorithm == "hyperband":
        epochs = max(stage.epochs for stage in base.fine_tune.stages)
        return kt.oracles.HyperbandOracle(
            goal, max_epochs=max(epochs, 2), factor=3, hyperband_iterations=1, seed=seed
        )
    return kt.oracles.RandomSearchOracle(goal, max_trials=settings.max_trials, seed=seed)
