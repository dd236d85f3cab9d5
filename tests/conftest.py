import os
import subprocess

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state."""
    keras.utils.set_random_seed(0)


@pytest.fixture
def in_process(tmp_path, monkeypatch, capsys):
    """Runs a command through `tfx_transfer.app.cli.main` in this process, in tmp_path, and returns
    what a subprocess run would (a `CompletedProcess` with the exit status and output): no new
    Python and TensorFlow for the checks of a command's output (tests/test_cli.py's `cli`
    covers the entry point, `sys.exit(main())`, and its exit statuses). An exception, which
    would print a traceback, fails the test."""
    from tfx_transfer.app.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*args):
        status = main([str(arg) for arg in args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, status, out, err)

    return run
