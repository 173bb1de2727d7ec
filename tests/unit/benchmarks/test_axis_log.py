"""Each bench run writes docaxis's output to a log of its own, the previous run's kept beside it."""

from __future__ import annotations

from pathlib import Path

from benchmarks.stack import Axis, BenchPki


def _axis(work: Path, pki: BenchPki) -> Axis:
    key = work / "ledger.key"
    key.touch()  # present: no `docaxis ledger keygen` for a run that starts nothing
    return Axis(
        "postgresql://unused", "amqp://unused", pki, 1, work, work / "agencies.csv", ledger_key=key
    )


def test_each_run_starts_a_fresh_log_and_keeps_the_previous_one(tmp_path: Path) -> None:
    pki = BenchPki(tmp_path / "pki")
    first = _axis(tmp_path, pki)
    first.log_path.write_text("first run\n")
    second = _axis(tmp_path, pki)
    assert second.log_path == first.log_path
    assert not second.log_path.exists()
    assert (tmp_path / "docaxis.log.1").read_text() == "first run\n"
    second.log_path.write_text("second run\n")
    _axis(tmp_path, pki)
    assert not second.log_path.exists()
    assert (tmp_path / "docaxis.log.1").read_text() == "second run\n"
