"""TLS to both backends, against private servers with certificates from a CA made here
(trustme): `rediss://` and PostgreSQL `sslmode=verify-full` verify the chain and the host name,
so the same server reached by a name its certificate does not carry, or signed by another CA,
is refused."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import trustme

from kaleido import Settings, open_kaleido
from kaleido.devstack import PostgresServer, RedisServer
from kaleido.errors import BackendError
from kaleido.gateways import open_backends
from kaleido.migrate import migrate

REPO = Path(__file__).resolve().parent.parent


@attrs.frozen
class Certificates:
    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def other_ca(self) -> Path:
        return self.folder / "other-ca.pem"

    @property
    def cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def key(self) -> Path:
        return self.folder / "server.key"


@attrs.frozen
class TlsServers:
    certificates: Certificates
    redis_port: int
    postgres_port: int
    redis_password: str
    postgres_password: str

    def redis_url(self, host: str = "localhost", ca: Path | None = None) -> str:
        ca = ca or self.certificates.ca
        return (
            f"rediss://default:{self.redis_password}@{host}:{self.redis_port}/0?ssl_ca_certs={ca}"
        )

    def database_url(self, host: str = "localhost", ca: Path | None = None) -> str:
        ca = ca or self.certificates.ca
        return (
            f"postgresql://postgres:{self.postgres_password}@{host}:{self.postgres_port}/kaleido"
            f"?sslmode=verify-full&sslrootcert={ca}"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _certificates(folder: Path) -> Certificates:
    """A CA, a server certificate for `localhost` only (no IP address), and an unrelated CA."""
    folder.mkdir()
    found = Certificates(folder)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(found.ca))
    trustme.CA().cert_pem.write_to_path(str(found.other_ca))
    server = ca.issue_cert("localhost")
    server.cert_chain_pems[0].write_to_path(str(found.cert))
    server.private_key_pem.write_to_path(str(found.key))
    found.key.chmod(0o600)
    if os.geteuid() == 0:  # the private PostgreSQL runs as `postgres`, which must own its key
        import pwd

        account = pwd.getpwnam("postgres")
        os.chown(found.key, account.pw_uid, account.pw_gid)
    folder.chmod(0o755)
    return found


@pytest.fixture(scope="module")
def tls_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServers]:
    root = tmp_path_factory.mktemp("tls")
    root.chmod(0o755)
    certificates = _certificates(root / "certs")
    tls_port = _free_port()
    redis = RedisServer(
        root / "redis",
        REPO / "redis.conf",
        overrides={
            "tls-port": str(tls_port),
            "tls-cert-file": str(certificates.cert),
            "tls-key-file": str(certificates.key),
            "tls-ca-cert-file": str(certificates.ca),
            "tls-auth-clients": "no",
        },
    )
    postgres = PostgresServer(
        root / "postgres",
        fast=True,
        settings={
            "ssl": "on",
            "ssl_cert_file": str(certificates.cert),
            "ssl_key_file": str(certificates.key),
        },
    )
    redis.start()
    try:
        postgres.start()
        try:
            yield TlsServers(
                certificates, tls_port, postgres.port, redis.password, postgres.password
            )
        finally:
            postgres.stop()
    finally:
        redis.stop()


def settings(redis_url: str, database_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        database_url=database_url,
        sync_interval=3600.0,
        shutdown_deadline=5.0,
        log_format="console",
    )


async def test_views_and_syncs_run_over_tls_to_both(tls_servers: TlsServers) -> None:
    config = settings(tls_servers.redis_url(), tls_servers.database_url())
    async with open_backends(config) as backends:
        await migrate(backends.postgres)
        assert await backends.postgres.fetchval(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        assert await backends.redis.ping()  # the port speaks only TLS
    async with open_kaleido(config) as k:
        result = await k.views.record([(1, 7), (2, 7), (1, 7)])
        assert result.counted == 2
        assert (await k.sync_now()).views == 2
        assert await k.views.total(7) == 2


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"host": "127.0.0.1"}, "IP address mismatch"),  # the certificate names localhost
        ({"ca": "other"}, "self-signed certificate in certificate chain"),
    ],
    ids=["wrong-host-name", "unknown-ca"],
)
async def test_redis_refuses_an_unverified_server(
    tls_servers: TlsServers, change: dict[str, str], expected: str
) -> None:
    ca = tls_servers.certificates.other_ca if change.get("ca") else None
    url = tls_servers.redis_url(change.get("host", "localhost"), ca)
    async with open_backends(settings(url, tls_servers.database_url())) as backends:
        with pytest.raises(BackendError, match=expected):
            await backends.redis.execute("PING")


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"host": "127.0.0.1"}, "IP address mismatch"),
        ({"ca": "other"}, "unable to get local issuer certificate"),
    ],
    ids=["wrong-host-name", "unknown-ca"],
)
async def test_postgres_refuses_an_unverified_server(
    tls_servers: TlsServers, change: dict[str, str], expected: str
) -> None:
    ca = tls_servers.certificates.other_ca if change.get("ca") else None
    url = tls_servers.database_url(change.get("host", "localhost"), ca)
    async with open_backends(settings(tls_servers.redis_url(), url)) as backends:
        with pytest.raises(BackendError, match=expected):
            await backends.postgres.fetchval("SELECT 1")
