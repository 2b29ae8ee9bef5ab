"""Several services of one remote host share one proxy host (one host name, one address set).

A printer offering _ipp, _http and the port-0 "flagship" _printer from one host is
exported by campus A; campus B publishes three proxies naming the same host.  The
netns matrix (tests/e2e/test_interop_matrix_e2e.py) checks the same on a real
link with avahi-browse.
"""

from __future__ import annotations

from z2z.core.bridge import PROXY_MARK, Bridge, BridgeSettings, Publish, Put
from z2z.core.records import Service

TYPES = ("_ipp._tcp", "_http._tcp", "_printer._tcp")
NOW = 1_800_000_000.0
ADDRS = ("10.1.0.9", "2001:db8:1::9")
DEVICE = [
    Service("_ipp._tcp", "Room 2.14 Printer", "HP2A1B3C", 631, (b"rp=ipp/print",), ADDRS, ("_universal",)),
    Service("_http._tcp", "Room 2.14 Printer", "HP2A1B3C", 80, (b"path=/",), ADDRS, (), 10, 60),
    Service("_printer._tcp", "Room 2.14 Printer", "HP2A1B3C", 0, (), ADDRS),
]


def bridge(site: str) -> Bridge:
    return Bridge(BridgeSettings(site=site, network="z2z", node="00" * 8, types=TYPES))


def test_three_services_of_one_host_share_one_proxy_host() -> None:
    a, b = bridge("campus-a"), bridge("campus-b")
    published = []
    for service in DEVICE:
        for put in [x for x in a.local_up(service, NOW) if isinstance(x, Put)]:
            published += [
                x for x in b.remote_value(put.service_type, put.data, NOW) if isinstance(x, Publish)
            ]
    assert sorted(p.service.type for p in published) == sorted(TYPES)
    assert {p.service.host for p in published} == {"hp2a1b3c-campus-a" + PROXY_MARK}
    assert {p.service.addresses for p in published} == {ADDRS}
    by_type = {p.service.type: p.service for p in published}
    assert by_type["_printer._tcp"].port == 0
    assert (by_type["_http._tcp"].priority, by_type["_http._tcp"].weight) == (10, 60)
    assert by_type["_ipp._tcp"].subtypes == ("_universal",)
