"""Subtype PTRs with python-zeroconf: what its registry answers, what is announced, what the cache teaches.

No sockets: python-zeroconf's own registry, cache and query handler, and a
stand-in for `Zeroconf.async_send` that keeps the packets, read with dnslib.
"""

from __future__ import annotations

import asyncio

from dnslib import QTYPE, DNSRecord
from zeroconf import DNSCache, DNSPointer, DNSQuestion, RecordUpdate, ServiceInfo, const, current_time_millis
from zeroconf._handlers.query_handler import QueryHandler
from zeroconf._protocol.incoming import DNSIncoming
from zeroconf._protocol.outgoing import DNSOutgoing
from zeroconf._services.registry import ServiceRegistry

from z2z.adapters.link.base import subtypes_by_type
from z2z.adapters.link.zeroconf_ext import SubtypeOwners, SubtypePointers, cached_subtypes

T = "_ipp._tcp.local."
NAME = f"Room 2.14 Printer.{T}"


class FakeZeroconf:
    """What `SubtypePointers` and `QueryHandler` use of a `Zeroconf`: registry, cache, async_send."""

    def __init__(self) -> None:
        self.registry = ServiceRegistry()
        self.cache = DNSCache()
        self.done = False
        self.sent: list[DNSRecord] = []
        self.question_history = None
        self.out_queue = None
        self.out_delay_queue = None

    def async_send(self, out: DNSOutgoing, *args: object) -> None:
        self.sent += [DNSRecord.parse(p) for p in out.packets()]


def _info() -> ServiceInfo:
    return ServiceInfo(T, NAME, port=631, properties=b"\x05rp=ab", server="h-z2z.local.",
                       addresses=[bytes([10, 0, 0, 1])], host_ttl=120, other_ttl=120)  # fmt: skip


def _ptrs(msgs: list[DNSRecord]) -> list[tuple[tuple[bytes, ...], int]]:
    return [(rr.rname.label, rr.ttl) for m in msgs for rr in m.rr if rr.rtype == QTYPE.PTR]


def test_subtype_ptrs_are_listed_announced_answered_and_withdrawn() -> None:
    async def run() -> None:
        zc = FakeZeroconf()
        info = _info()
        zc.registry.async_add(info)
        pointers = SubtypePointers(zc)  # type: ignore[arg-type]
        pointers.set(info, ["_universal", "_print"])
        universal = (b"_universal", b"_sub", b"_ipp", b"_tcp", b"local")
        printing = (b"_print", b"_sub", b"_ipp", b"_tcp", b"local")
        assert sorted(_ptrs(zc.sent)) == [(printing, 120), (universal, 120)]
        assert sorted(pointers.labels(info)) == ["_print", "_universal"]

        # python-zeroconf's own query handler answers the subtype question, with the right owner.
        handler = QueryHandler(zc)  # type: ignore[arg-type]
        query = DNSOutgoing(const._FLAGS_QR_QUERY)
        qu = const._CLASS_IN | const._CLASS_UNIQUE  # QU: no question history needed
        query.add_question(DNSQuestion("_universal._sub._ipp._tcp.local.", const._TYPE_PTR, qu))
        answers = handler.async_response([DNSIncoming(query.packets()[0])], False)
        assert answers is not None
        records = {**answers.ucast, **answers.mcast_now, **answers.mcast_aggregate}
        ptrs = [r for r in records if isinstance(r, DNSPointer)]
        assert [(p.name, p.alias) for p in ptrs] == [("_universal._sub._ipp._tcp.local.", NAME)]
        assert {r.type for r in records[ptrs[0]]} >= {const._TYPE_SRV, const._TYPE_TXT, const._TYPE_A}
        # the service itself is still answered under its type, and only there
        assert [i.name for i in zc.registry.async_get_infos_type(T)] == [NAME]

        zc.sent.clear()
        await asyncio.sleep(1.1)  # the second announcement (RFC 6762 §8.3)
        assert sorted(_ptrs(zc.sent)) == [(printing, 120), (universal, 120)]

        zc.sent.clear()
        pointers.set(info, ["_universal"])  # _print goes: one goodbye, nothing re-announced
        assert _ptrs(zc.sent) == [(printing, 0)]
        assert not zc.registry.async_get_infos_type("_print._sub._ipp._tcp.local.")

        zc.sent.clear()
        pointers.clear_all()
        assert _ptrs(zc.sent) == [(universal, 0)]
        assert not zc.registry.async_get_infos_type("_universal._sub._ipp._tcp.local.")
        assert zc.registry.async_get_infos_type(T)  # the service is python-zeroconf's to withdraw

    asyncio.run(run())


def test_cached_subtypes_are_learned_passively() -> None:
    zc = FakeZeroconf()
    now = current_time_millis()
    records = [
        DNSPointer("_universal._sub._ipp._tcp.local.", const._TYPE_PTR, const._CLASS_IN, 120, NAME, now),
        DNSPointer("_Fax._sub._ipp._tcp.local.", const._TYPE_PTR, const._CLASS_IN, 120, NAME.lower(), now),
        DNSPointer("_other._sub._ipp._tcp.local.", const._TYPE_PTR, const._CLASS_IN, 120, f"X.{T}", now),
        DNSPointer("_old._sub._ipp._tcp.local.", const._TYPE_PTR, const._CLASS_IN, 1, NAME, now - 5000),
        DNSPointer("_universal._sub._ipps._tcp.local.", const._TYPE_PTR, const._CLASS_IN, 120, NAME, now),
        # labels that cannot be carried are left out, not the service: a dot, a control character
        DNSPointer("a.b._sub._ipp._tcp.local.", const._TYPE_PTR, const._CLASS_IN, 120, NAME, now),
        DNSPointer("_bad\x01._sub._ipp._tcp.local.", const._TYPE_PTR, const._CLASS_IN, 120, NAME, now),
    ]
    zc.cache.async_add_records(records)
    owners = SubtypeOwners()  # what python-zeroconf shows its record listeners
    owners.async_update_records(zc, now, [RecordUpdate(r, None) for r in records])  # type: ignore[arg-type]
    assert cached_subtypes(zc, owners, "_ipp._tcp", NAME) == ("_Fax", "_universal")  # type: ignore[arg-type]
    assert len(owners.by_type["_ipp._tcp.local."]) == 6
    zc.cache.async_remove_records([r for r in records if r.name.startswith("_other")])
    cached_subtypes(zc, owners, "_ipp._tcp", NAME)  # type: ignore[arg-type]
    assert len(owners.by_type["_ipp._tcp.local."]) == 5  # gone from the cache, forgotten


def test_subtypes_by_type() -> None:
    assert subtypes_by_type(
        ["_universal._sub._ipp._tcp", "_print._sub._ipp._tcp", "_universal._sub._ipps._tcp"]
    ) == {
        "_ipp._tcp": ("_universal", "_print"),
        "_ipps._tcp": ("_universal",),
    }
