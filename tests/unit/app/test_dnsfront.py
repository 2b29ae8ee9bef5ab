"""What the gateway's DNS front serves: imports always, the link's own services only with dns-local."""

from __future__ import annotations

import time

from z2z.adapters.dns.prefixes import interface_prefixes
from z2z.app.config import GatewayConfig, build, check_settings
from z2z.app.dnsfront import browse_prefixes, dns_services, make_dns_server
from z2z.core.bridge import Bridge, BridgeSettings, Put
from z2z.core.records import Service

T = "_ipp._tcp"
LOCAL = Service(T, "Local Printer", "local", 631, (b"rp=ipp/print",), ("10.88.2.10",))
REMOTE = Service(T, "Remote Printer", "remote", 631, (b"rp=ipp/print",), ("10.88.1.10",))


def bridges() -> Bridge:
    """Campus B's bridge with one local printer and one printer imported from campus A."""
    now = time.time()
    a = Bridge(BridgeSettings(site="campus-a", network="z2z", node="00" * 8, types=(T,)))
    b = Bridge(BridgeSettings(site="campus-b", network="z2z", node="11" * 8, types=(T,)))
    b.local_up(LOCAL, now)
    for put in (x for x in a.local_up(REMOTE, now) if isinstance(x, Put)):
        b.remote_value(T, put.data, now)
    return b


def test_imports_only_by_default_and_the_link_too_with_dns_local() -> None:
    b = bridges()
    assert [s.instance for s in dns_services(GatewayConfig(), b)] == ["Remote Printer"]
    local = build({}, {"dns-local": True})
    assert sorted(s.instance for s in dns_services(local, b)) == ["Local Printer", "Remote Printer"]


def test_browse_prefixes_default_to_the_interfaces() -> None:
    assert browse_prefixes(build({}, check_settings({"dns-prefixes": ["10.88.2.7/24"]}))) == ("10.88.2.0/24",)
    assert browse_prefixes(GatewayConfig(interface=("lo",))) == interface_prefixes(("lo",)) == ()


def test_the_server_is_built_from_the_config() -> None:
    config = build(
        {}, {"dns-listen": "127.0.0.1:0", "dns-domain": "campus.example", "dns-prefixes": ["10.88.2.0/24"]}
    )
    server = make_dns_server(config, bridges())
    assert server.zone.domain == "campus.example."
    assert server.zone.browse_zones == ("_dns-sd._udp.0.2.88.10.in-addr.arpa.",)
    assert [s.instance for s in server.zone.services] == ["Remote Printer"]


def test_a_bad_prefix_is_one_config_error_naming_the_key() -> None:
    import pytest

    from z2z.app.config import ConfigError

    with pytest.raises(ConfigError, match=r"dns-prefixes: '10\.1\.2\.0/40' does not appear"):
        check_settings({"dns-prefixes": ["10.88.2.0/24", "10.1.2.0/40"]})
    with pytest.raises(ConfigError, match="dns-local: expected true or false"):
        check_settings({"dns-local": "yes"})
