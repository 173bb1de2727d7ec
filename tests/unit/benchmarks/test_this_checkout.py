"""The processes a bench starts run the code of the checkout the bench was started from, even
when the import path names another checkout first (a venv shared between worktrees)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks.stack import REPO, this_checkout


def test_docaxis_imports_this_checkout_before_another_on_the_path(tmp_path: Path) -> None:
    """Another checkout's `services` first on the path (as a shared venv's editable install puts
    it): a child started with this_checkout's environment imports this checkout's."""
    other = tmp_path / "other-checkout"
    (other / "services").mkdir(parents=True)
    (other / "services" / "__init__.py").write_text("")
    env = this_checkout({"PYTHONPATH": str(other)})
    imported = subprocess.run(
        [sys.executable, "-c", "import services; print(services.__file__)"],
        env=env,
        cwd=tmp_path,  # not the checkout: the current directory is on the path too
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(imported) == REPO / "services" / "__init__.py"
    assert env["PYTHONPATH"].split(os.pathsep)[1:] == [str(other)]  # the rest of the path is kept
