"""A bench stops the servers it started even when one's stop hangs: past the stop's time the
script and its children are killed, the server killed by pid, the others still stopped, and
the run told."""

from __future__ import annotations

from pathlib import Path

from benchmarks.stack import Ports, Servers

# Stand-ins for deploy/local's scripts: each records the actions it ran; rabbitmq.sh's stop
# hangs in a child (as `rabbitmqctl stop` did on a broker with ~5,000 queues), whose pid it
# writes first, until its kill-node has run.
_SCRIPT = """#!/usr/bin/env bash
echo "$1" >> "{work}/{name}.actions"
case $1 in
    start) echo "{url}" ;;
    stop) {stop} ;;
    kill-node) touch "{work}/killed" ;;
esac
"""
_HANGS = '[[ -e "{work}/killed" ]] || {{ sleep 300 & echo $! > "{work}/hung.pid"; wait; }}'


def _scripts(work: Path) -> Path:
    folder = work / "scripts"
    folder.mkdir()
    for name, url, stop in (
        ("rabbitmq.sh", "amqp://guest:guest@127.0.0.1:1/", _HANGS.format(work=work)),
        ("postgres.sh", "postgresql://127.0.0.1:1/", "true"),
    ):
        (folder / name).write_text(_SCRIPT.format(work=work, name=name, url=url, stop=stop))
    return folder


def _actions(work: Path, name: str) -> list[str]:
    return (work / f"{name}.actions").read_text().split()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_a_stop_that_hangs_is_cut_off_the_server_killed_and_the_run_told(
    tmp_path: Path,
) -> None:
    servers = Servers(
        tmp_path, Ports(1, 2, 3, 4, 5), {}, scripts=_scripts(tmp_path), stop_timeout_s=1
    )
    await servers.start()
    problems = servers.stop()
    assert _actions(tmp_path, "rabbitmq.sh") == ["reset", "start", "stop", "kill-node", "stop"]
    assert _actions(tmp_path, "postgres.sh") == ["start", "stop"]  # stopped all the same
    [problem] = problems
    assert problem == "rabbitmq.sh stop failed (no end within 1 s); killed it by pid"
    # The hung stop's own child went with it (its process group), not left running.
    hung = int((tmp_path / "hung.pid").read_text())
    assert not _alive(hung), f"pid {hung} still runs"


async def test_servers_that_stop_in_time_report_nothing(tmp_path: Path) -> None:
    scripts = _scripts(tmp_path)
    (scripts / "rabbitmq.sh").write_text(
        _SCRIPT.format(work=tmp_path, name="rabbitmq.sh", url="amqp://x/", stop="true")
    )
    servers = Servers(tmp_path, Ports(1, 2, 3, 4, 5), {}, scripts=scripts, stop_timeout_s=30)
    await servers.start()
    assert servers.stop() == []
    # The broker starts without the queues of earlier runs.
    assert _actions(tmp_path, "rabbitmq.sh") == ["reset", "start", "stop"]
