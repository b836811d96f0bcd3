"""kaleido.gateways._bridge tells a parameter asyncpg cannot encode (bad input: never worth a
retry) from a broken connection by asyncpg's client-side DataError, which only its private
module `asyncpg.exceptions._base` names. These checks fail first (and say what moved) when an
asyncpg release changes it; pyproject.toml bounds the version to the ones checked here."""

from __future__ import annotations

from importlib.metadata import version

import asyncpg
import asyncpg.exceptions._base as asyncpg_base

from kaleido.errors import PostgresQueryError, PostgresUnavailable
from kaleido.gateways._bridge import map_postgres_error


def test_the_installed_asyncpg_is_within_the_checked_versions() -> None:
    installed = tuple(int(part) for part in version("asyncpg").split(".")[:2])
    assert (0, 29) <= installed < (0, 33), (
        f"asyncpg {installed}: check the canaries, then the bound"
    )


def test_the_client_side_data_error_is_still_where_kaleido_looks() -> None:
    data_error = getattr(asyncpg_base, "DataError", None)
    assert data_error is not None, "asyncpg.exceptions._base.DataError moved"
    assert data_error is not asyncpg.exceptions.DataError  # not the SQLSTATE 22 class
    assert issubclass(data_error, asyncpg.InterfaceError), (
        "asyncpg's encoder error is no longer an InterfaceError: the bridge would still map it "
        "first, but check that a broken connection is not one now"
    )


def test_an_encoder_error_is_bad_input_and_a_client_error_is_an_outage() -> None:
    bad_input = map_postgres_error(asyncpg_base.DataError("invalid input for query argument"))
    assert isinstance(bad_input, PostgresQueryError)
    broken = map_postgres_error(asyncpg.InternalClientError("cannot switch to state 15"))
    assert isinstance(broken, PostgresUnavailable)
