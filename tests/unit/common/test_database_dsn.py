"""A test's or a benchmark's own database on a server named by URL."""

from __future__ import annotations

from services.common.postgres import database_dsn


def test_the_database_is_replaced_and_the_hosts_and_parameters_stay() -> None:
    pair = "postgresql://postgres@127.0.0.1:5001,127.0.0.1:5002/docaxis?target_session_attrs=read-write"
    assert database_dsn(pair, "docaxis_chaos") == (
        "postgresql://postgres@127.0.0.1:5001,127.0.0.1:5002/docaxis_chaos"
        "?target_session_attrs=read-write"
    )


def test_a_single_server_url_names_the_database() -> None:
    assert (
        database_dsn("postgresql://postgres@127.0.0.1:5001/docaxis", "docaxis_test")
        == "postgresql://postgres@127.0.0.1:5001/docaxis_test"
    )
