"""Smoke runs of benchmarks/expansion.py and benchmarks/distribution.py (`--quick`)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_quick(script: str) -> list[str]:
    """The stdout lines of `benchmarks/<script> --quick`, run in a fresh process."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"ratio: \d+\.\d+", lines[-1]), lines[-1]
    return lines


@pytest.mark.slow
def test_expansion_benchmark_quick():
    lines = run_quick("expansion.py")
    assert "| model | build s | expand s | expand/build | copy s |" in lines
    rows = [line for line in lines if line.startswith("| ") and line[2:3] != "-"][1:]
    assert len(rows) == 8  # 4 models, plain and freeze_old=True
    assert sum("freeze_old=True" in row for row in rows) == 4
    ratios = [float(row.split("|")[4]) for row in rows]
    assert float(lines[-1].split()[1]) == pytest.approx(max(ratios), abs=0.01)


@pytest.mark.slow
def test_distribution_benchmark_quick():
    lines = run_quick("distribution.py")
    assert "| run | replicas | images/s |" in lines
    assert any(line.startswith("| MirroredStrategy(") for line in lines)
    assert any(line.startswith("GPU PROJECTION") for line in lines)
    assert float(lines[-1].split()[1]) > 0
