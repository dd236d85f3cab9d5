"""What every evaluation report shares: JSON, headline numbers, a printable table."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar


class Report:
    """Mixin for report dataclasses: `SUMMARY_KEYS` name the headline numbers,
    `per_class_rows` gives the per-class lines of `table(per_class=True)`, and
    an optional `per_step` dict (expansion step -> `STEP_METRIC`) adds a line
    per class-expansion step."""

    SUMMARY_KEYS: ClassVar[tuple[str, ...]] = ()
    STEP_METRIC: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def summary(self) -> dict[str, float | int | None]:
        """The headline numbers, without per-class details."""
        return {key: getattr(self, key) for key in self.SUMMARY_KEYS}

    def per_class_rows(self) -> list[tuple[str, str]]:
        return []

    def table(self, per_class: bool = False) -> str:
        rows = [(key, fmt(value)) for key, value in self.summary().items() if value is not None]
        for step, value in (getattr(self, "per_step", None) or {}).items():
            rows.append((f"{step}: {self.STEP_METRIC}", fmt(value)))
        if per_class:
            rows += [(f"  {name}", text) for name, text in self.per_class_rows()]
        width = max(len(key) for key, _ in rows)
        return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)

    def __str__(self) -> str:
        return self.table()


def fmt(value: Any) -> str:
    """4 decimals for floats, "-" for None."""
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
