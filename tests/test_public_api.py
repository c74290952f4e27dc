"""The public surface is deliberate: ``__all__`` lists exactly the names meant for users."""

from __future__ import annotations

import taskledger


def test_package_exports() -> None:
    assert sorted(taskledger.__all__) == ["Settings", "TaskledgerError", "__version__"]
    for name in taskledger.__all__:
        assert hasattr(taskledger, name)


def test_python_dash_m_runs_the_cli() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "taskledger", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert taskledger.__version__ in result.stdout
