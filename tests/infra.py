"""Starting and stopping the suite's own Postgres and RabbitMQ through deploy/local scripts."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Overridable (with the TEST_*_PORT variables) so that several suites can run side by side.
LOCAL = Path(os.environ.get("TEST_LOCAL_DIR", str(REPO / ".local" / "test")))


@dataclass(frozen=True, slots=True)
class SuiteServices:
    database_url: str
    amqp_url: str
    env: Mapping[str, str]

    def rabbit(self, action: str) -> str:
        return _script("rabbitmq.sh", action, self.env)

    def postgres(self, action: str) -> str:
        return _script("postgres.sh", action, self.env)

    def amqp_vhost(self, name: str) -> str:
        """The URL of a virtual host of its own on the suite's broker (created if missing): one
        per hub when a test federates several."""
        return _script("rabbitmq.sh", "vhost", self.env, name)


def _script(name: str, action: str, env: Mapping[str, str], *args: str) -> str:
    result = subprocess.run(
        ["bash", str(REPO / "deploy" / "local" / name), action, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{name} {action} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def suite_env() -> dict[str, str]:
    """Ports of the suite's own servers, apart from `make run`'s; overridable."""
    return {
        "DOCAXIS_LOCAL_DIR": str(LOCAL),
        "DOCAXIS_PG_PORT": os.environ.get("TEST_PG_PORT", "55433"),
        "DOCAXIS_AMQP_PORT": os.environ.get("TEST_AMQP_PORT", "35682"),
        "DOCAXIS_RABBIT_DIST_PORT": os.environ.get("TEST_RABBIT_DIST_PORT", "35683"),
        "DOCAXIS_EPMD_PORT": os.environ.get("TEST_EPMD_PORT", "34379"),
    }


def start_services() -> SuiteServices:
    """Fresh servers: stops leftovers of an earlier run, wipes their data, starts both at once."""
    env = suite_env()
    for name in ("rabbitmq.sh", "postgres.sh"):
        with contextlib.suppress(RuntimeError):  # nothing was running
            _script(name, "stop", env)
    shutil.rmtree(LOCAL, ignore_errors=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        database = pool.submit(_script, "postgres.sh", "start", env)
        broker = pool.submit(_script, "rabbitmq.sh", "start", env)
        database_url, amqp_url = database.result(), broker.result()
    return SuiteServices(database_url, amqp_url, env)


def stop_services(services: SuiteServices) -> None:
    errors: list[str] = []
    for name in ("rabbitmq.sh", "postgres.sh"):
        try:
            _script(name, "stop", services.env)
        except RuntimeError as exc:
            errors.append(str(exc))
    if errors:
        raise RuntimeError("\n".join(errors))
