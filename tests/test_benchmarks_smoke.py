"""benchmarks/backbones.py and benchmarks/memory.py run end to end with --quick."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
HEADERS = {
    "backbones.py": "| backbone | FLOPs/image | forward images/s | forward GFLOP/s | efficiency "
    "| train step images/s | train efficiency |",
    "memory.py": "| model | parameters | peak RSS MiB | above baseline MiB "
    "| 16 B x parameters MiB | fine-tuning s |",
}


def run_quick(script: str, tmp_path) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert HEADERS[script] in lines, result.stdout
    assert re.fullmatch(r"ratio: \d+(\.\d+)?", lines[-1]), lines[-1]
    return lines


@pytest.mark.slow
def test_backbones_benchmark_quick(tmp_path):
    lines = run_quick("backbones.py", tmp_path)
    assert float(lines[-1].split()[1]) > 0
    assert any(line.startswith("| resnet50 (224 px) |") for line in lines)


@pytest.mark.slow
def test_memory_benchmark_quick(tmp_path):
    lines = run_quick("memory.py", tmp_path)
    assert float(lines[-1].split()[1]) > 0
    rows = [line for line in lines if line.startswith(("| vgg16 ", "| mobilenet_v2 "))]
    assert len(rows) == 2
