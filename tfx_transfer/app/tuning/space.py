"""The search space of `tt.tune`: dotted keys of a run config and their ranges.

A space maps a key of the run config (`fine_tune.stages.0.learning_rate`,
`fine_tune.stages.1.top_blocks`, `model.dropout`, `data.batch_size`,
`fine_tune.augmentation.rotation`, ...) to a range:

    {min: 1.0e-4, max: 1.0e-2, sampling: log}   # float (or int when both ends are)
    {min: 1, max: 3}                            # int
    {min: 0.0, max: 0.5, step: 0.1}             # float on a grid
    {values: [constant, cosine]}                # a choice

Each key becomes one KerasTuner hyperparameter of the same name. Mistakes
(unknown keys, empty ranges, a learning rate <= 0, unknown range options) are
`ConfigError`s (a `ValueError`) naming the key.

Example:

>>> space = parse_space({"fine_tune.stages.0.learning_rate": {"min": 1e-4, "max": 1e-2,
...                                                           "sampling": "log"}}, base)
>>> apply_values(base, {"fine_tune.stages.0.learning_rate": 3e-3}).fine_tune.stages[0]
Stage(..., learning_rate=0.003, ...)
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import keras_tuner as kt

from tfx_transfer.app.run_config import ConfigError, RunConfig, config_from_dict

RANGE_KEYS = {"min", "max", "sampling", "step", "values"}
SAMPLINGS = ("linear", "log", "reverse_log")
POSITIVE = ("learning_rate", "batch_size", "epochs")  # keys whose values must be > 0
OPEN_MAPPINGS = ("fine_tune.augmentation",)  # free-form keys (augmentation ops) below these
SEARCHABLE = ("model", "data", "fine_tune", "expand")  # sections a space may change


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One searched key: a range (`low`, `high`, `sampling`, `step`) or `values`."""

    key: str
    low: float | int | None = None
    high: float | int | None = None
    sampling: str = "linear"
    step: float | int | None = None
    values: tuple[Any, ...] = ()

    def register(self, hp: kt.HyperParameters) -> Any:
        """Declares the hyperparameter on `hp` and returns its value for this trial."""
        if self.values:
            return hp.Choice(self.key, list(self.values))
        if isinstance(self.low, int) and isinstance(self.high, int):
            return hp.Int(self.key, self.low, self.high, step=self.step, sampling=self.sampling)
        return hp.Float(
            self.key, float(self.low), float(self.high), step=self.step, sampling=self.sampling
        )


def parse_space(space: Mapping[str, Any], base: RunConfig) -> list[Parameter]:
    """The parameters of `space`, each checked against `base`; raises `ConfigError`
    naming the key at fault.

    Example:

    >>> [p.key for p in parse_space({"model.dropout": {"min": 0.0, "max": 0.5}}, base)]
    ['model.dropout']
    """
    if not space:
        raise ConfigError("The search space is empty; give at least one key and its range.")
    parameters = []
    for key, spec in space.items():
        parameter = _parameter(str(key), spec)
        _check_key(base, parameter.key)
        for value in _extremes(parameter):
            try:
                apply_values(base, {parameter.key: value})
            except ValueError as error:
                raise ConfigError(f"Search space key {key!r}: value {value!r}: {error}") from None
        parameters.append(parameter)
    return parameters


def apply_values(base: RunConfig, values: Mapping[str, Any]) -> RunConfig:
    """`base` with each dotted key set to its value, validated as a run config.

    Example:

    >>> apply_values(base, {"model.dropout": 0.3}).model.dropout
    0.3
    """
    tree = copy.deepcopy(base.to_dict())
    for key, value in values.items():
        *parents, last = key.split(".")
        node = tree
        for part in parents:
            if isinstance(node, list):
                node = node[int(part)]
                continue
            if node.get(part) is None and ".".join(parents) in OPEN_MAPPINGS:
                node[part] = {}  # e.g. fine_tune.augmentation: null -> {rotation: ...}
            node = node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return config_from_dict(tree)


def _parameter(key: str, spec: Any) -> Parameter:
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"Search space key {key!r}: expected a range {{min, max[, sampling, step]}} or "
            f"{{values: [...]}}, got {spec!r}."
        )
    unknown = sorted(set(spec) - RANGE_KEYS)
    if unknown:
        raise ConfigError(
            f"Search space key {key!r}: unknown range options {unknown}; allowed: "
            f"{sorted(RANGE_KEYS)}."
        )
    if "values" in spec:
        values = tuple(spec["values"] or ())
        if not values or set(spec) != {"values"}:
            raise ConfigError(
                f"Search space key {key!r}: 'values' needs a non-empty list, and no min/max."
            )
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"Search space key {key!r}: 'values' has duplicates: {list(values)}.")
        parameter = Parameter(key, values=values)
    else:
        if "min" not in spec or "max" not in spec:
            raise ConfigError(f"Search space key {key!r}: a range needs both 'min' and 'max'.")
        low, high = spec["min"], spec["max"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise ConfigError(f"Search space key {key!r}: min and max must be numbers.")
        if not low < high:
            raise ConfigError(
                f"Search space key {key!r}: empty range, min {low!r} is not below max {high!r}."
            )
        sampling = spec.get("sampling", "linear")
        if sampling not in SAMPLINGS:
            raise ConfigError(
                f"Search space key {key!r}: sampling {sampling!r} is not one of {SAMPLINGS}."
            )
        if sampling != "linear" and low <= 0:
            raise ConfigError(f"Search space key {key!r}: {sampling} sampling needs min > 0.")
        parameter = Parameter(key, low, high, sampling, spec.get("step"))
    name = key.rsplit(".", 1)[-1]
    if name in POSITIVE and any(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0
        for v in _extremes(parameter)
    ):
        raise ConfigError(f"Search space key {key!r}: {name} must be > 0 over the whole range.")
    return parameter


def _extremes(parameter: Parameter) -> tuple[Any, ...]:
    return parameter.values or (parameter.low, parameter.high)


def _check_key(base: RunConfig, key: str) -> None:
    """Raises unless `key` names a value of the run config (or an augmentation op)."""
    node: Any = base.to_dict()
    parts = key.split(".")
    if parts[0] not in SEARCHABLE:
        raise ConfigError(
            f"Search space key {key!r}: only the sections {list(SEARCHABLE)} can be searched."
        )
    for depth, part in enumerate(parts):
        path = ".".join(parts[:depth])
        if path in OPEN_MAPPINGS and depth == len(parts) - 1:
            return
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            known = (
                [str(i) for i in range(len(node))]
                if isinstance(node, list)
                else sorted(node)
                if isinstance(node, Mapping)
                else []
            )
            where = f"under {path!r}" if path else "at the top"
            raise ConfigError(
                f"Search space key {key!r}: the run config has no {part!r} {where}; "
                f"keys there: {known}."
            )
    if isinstance(node, (Mapping, list)):
        raise ConfigError(
            f"Search space key {key!r} names a whole section; search one of its values."
        )
