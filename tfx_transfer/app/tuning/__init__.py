"""Hyperparameter search for fine-tuning with KerasTuner: `tt.tune`.

Example:

>>> result = tt.tune("examples/configs/tune_expand_90_to_92.yaml")
>>> print(result.table())
"""

from tfx_transfer.app.tuning.results import TuneResult
from tfx_transfer.app.tuning.search import tune
from tfx_transfer.app.tuning.space import apply_values, parse_space

__all__ = ["TuneResult", "apply_values", "parse_space", "tune"]
