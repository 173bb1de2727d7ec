"""Long CLI work shows progress on a terminal and nothing when its output is piped."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

from services.common.progress import Progress
from tests.infra import REPO
from tests.unit.ledger.synthetic import policy_for, synthetic_log

DOCAXIS = str(Path(sys.executable).parent / "docaxis")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_count_is_shown_and_the_line_finished() -> None:
    screen = Terminal()
    with Progress("registering agencies", 3, stream=screen, interval_s=0) as progress:
        for _ in range(3):
            progress.advance()
    assert progress.shown
    assert "\rregistering agencies: 1 of 3 (33%)" in screen.getvalue()
    assert screen.getvalue().endswith("registering agencies: 3 of 3 (100%)\x1b[K\n")


def test_bytes_are_shown_in_binary_units_and_an_unknown_total_as_a_count() -> None:
    screen = Terminal()
    with Progress("uploading", 4 << 20, unit="B", stream=screen, interval_s=0) as progress:
        progress.advance(3 << 19)
    assert "uploading: 1.5 MiB of 4.0 MiB (37%)" in screen.getvalue()
    counted = Terminal()
    with Progress("verifying ledger entries", stream=counted, interval_s=0) as entries:
        entries.advance(1200)
    assert "verifying ledger entries: 1,200\x1b[K\n" in counted.getvalue()


def test_piped_output_gets_nothing() -> None:
    piped = io.StringIO()
    with Progress("registering agencies", 3, stream=piped, interval_s=0) as progress:
        progress.advance(3)
    assert not progress.shown
    assert piped.getvalue() == ""


def _verify(export: Path, policy: Path, stderr: int) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [DOCAXIS, "audit", "verify", "full", str(export), "--trust-policy", str(policy)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=stderr,
        timeout=120,
        check=False,
    )


def test_audit_verify_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    """The same verification: piped, stderr holds no progress; on a terminal it counts entries.
    The report on stdout is the same JSON either way."""
    log = synthetic_log(300, (100, 300))
    export = log.write(tmp_path / "export")
    policy = tmp_path / "policy.json"
    policy.write_text(policy_for(log.signer).to_json(), encoding="utf-8")
    piped = _verify(export, policy, subprocess.PIPE)
    assert piped.returncode == 0, piped.stderr
    assert b"verifying" not in piped.stderr
    controller, terminal = pty.openpty()
    try:
        shown = _verify(export, policy, terminal)
        os.close(terminal)
        screen = b""
        while chunk := _read(controller):
            screen += chunk
    finally:
        os.close(controller)
    assert shown.returncode == 0
    assert b"verifying ledger entries: 300" in screen
    assert shown.stdout == piped.stdout


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the terminal's other end closed
        return b""


def test_a_transfer_reports_its_absolute_count_even_when_a_resume_goes_back() -> None:
    """docaxis_client's hooks tell the bytes done so far; a resumed upload restarts from what
    the server committed, which may be less than was sent."""
    screen = Terminal()
    with Progress("uploading", 4 << 20, unit="B", stream=screen, interval_s=0) as progress:
        progress.reach(3 << 20)
        progress.reach(2 << 20)
        progress.reach(4 << 20)
    drawn = screen.getvalue()
    assert drawn.index("3.0 MiB of") < drawn.index("2.0 MiB of") < drawn.index("4.0 MiB of")
    assert drawn.endswith("uploading: 4.0 MiB of 4.0 MiB (100%)\x1b[K\n")
