"""Whose forwarded headers count (kaleido.http.proxies), and the new HTTP settings."""

from __future__ import annotations

import pytest

from kaleido.errors import ConfigError
from kaleido.http.proxies import TrustedProxies
from kaleido.settings import settings_from_argv

PROXIES = TrustedProxies.of(["10.0.0.0/8", "::1/128"])


def headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in values.items()]


def test_an_untrusted_peer_keeps_its_own_address_and_scheme() -> None:
    sent = headers(x_forwarded_for="1.2.3.4", x_forwarded_proto="https")
    assert PROXIES.resolve("203.0.113.9", "http", sent) == ("203.0.113.9", "http")
    assert TrustedProxies().resolve("10.0.0.1", "http", sent) == ("10.0.0.1", "http")


def test_the_client_is_the_nearest_untrusted_hop_from_the_right() -> None:
    sent = headers(x_forwarded_for="6.6.6.6, 198.51.100.7, 10.0.0.9", x_forwarded_proto="https")
    assert PROXIES.resolve("10.0.0.1", "http", sent) == ("198.51.100.7", "https")
    only_proxies = headers(x_forwarded_for="10.0.0.3")
    assert PROXIES.resolve("10.0.0.1", "http", only_proxies) == ("10.0.0.3", "http")
    with_ports = headers(x_forwarded_for="[2001:db8::1]:443")
    assert PROXIES.resolve("::1", "http", with_ports) == ("2001:db8::1", "http")
    odd_scheme = headers(x_forwarded_proto="gopher")
    assert PROXIES.resolve("10.0.0.1", "http", odd_scheme) == ("10.0.0.1", "http")


def test_the_http_settings_are_validated_naming_the_variable() -> None:
    env = {
        "KALEIDO_TRUSTED_PROXIES": "10.0.0.5, 10.1.0.0/16",
        "KALEIDO_HTTP2": "on",
        "KALEIDO_MAX_CONNECTIONS_PER_CLIENT": "8",
    }
    settings = settings_from_argv([], env)
    assert settings.trusted_proxies == ("10.0.0.5/32", "10.1.0.0/16")
    assert (settings.http2, settings.max_connections_per_client) == ("on", 8)
    for variable, value, reason in [
        ("KALEIDO_TRUSTED_PROXIES", "10.0.0.5, proxy.local", "expected IP addresses or CIDR"),
        ("KALEIDO_HTTP2", "yes", "expected one of on, off"),
        ("KALEIDO_MAX_CONNECTIONS_PER_CLIENT", "0", "positive whole number"),
    ]:
        with pytest.raises(ConfigError, match=f"^{variable}: .*{reason}"):
            settings_from_argv([], {variable: value})
