"""A failing test is reported as failed, even when a collection re-enters the AST constructor while
pytest formats its traceback (CPython gh-106905; tests/ast_reentry.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ast_reentry import REENTRY_BUG

REPO = Path(__file__).resolve().parents[2]

# A test that fails through a chain of coroutines while, at every collection, a callback formats
# an exception as asyncio's Future.__del__ does for one nobody retrieved. Pytest parses each
# frame's whole module (asyncio's among them) to show the failure's source lines, and some
# collection starts inside one of those parses; in the suite the finalizers of a failed asyncio
# test's garbage do it by chance.
FAILING_TEST = """
import asyncio
import gc
import traceback


def _refuse(port):
    raise ConnectionError(f"peer on {port} went away")


def _abandoned_failure():
    try:
        channel = _refuse(5672)
    except ConnectionError as error:
        return error


ABANDONED = _abandoned_failure()


def _log_abandoned_failure(phase, info):
    if phase == "start":
        traceback.format_exception(ABANDONED)


async def _step(depth):
    if depth == 0:
        raise LookupError("the copy is gone")
    await _step(depth - 1)


def test_fails_through_a_chain_of_coroutines():
    gc.callbacks.append(_log_abandoned_failure)
    asyncio.run(_step(20))
"""

GUARDING_CONFTEST = """
from tests.ast_reentry import guard_ast_construction


def pytest_configure():
    guard_ast_construction()
"""


def _run_session(folder: Path) -> subprocess.CompletedProcess[str]:
    (folder / "test_chain.py").write_text(FAILING_TEST)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(folder)],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_failure_formatted_while_a_collection_parses_is_reported_as_failed(
    tmp_path: Path,
) -> None:
    """With the suite's guard the session reports the one failure and exits 1."""
    (tmp_path / "conftest.py").write_text(GUARDING_CONFTEST)
    session = _run_session(tmp_path)
    assert "INTERNALERROR" not in session.stdout + session.stderr, session.stdout[-3000:]
    assert session.returncode == pytest.ExitCode.TESTS_FAILED, session.stdout[-3000:]
    assert "1 failed" in session.stdout


@pytest.mark.skipif(not REENTRY_BUG, reason="this Python's AST constructor can be re-entered")
def test_without_the_guard_the_same_failure_stops_the_session(tmp_path: Path) -> None:
    """The reproduction still reproduces: unguarded, this Python ends the session with an
    INTERNALERROR (so the test above passes because of the guard, not by chance)."""
    session = _run_session(tmp_path)
    assert session.returncode == pytest.ExitCode.INTERNAL_ERROR, session.stdout[-3000:]
    assert "AST constructor recursion depth mismatch" in session.stdout
