"""Answers of several packets are packed by instance (z2z.adapters.link.packing), read with dnslib."""

from __future__ import annotations

from collections import Counter

from dnslib import QTYPE, DNSRecord
from zeroconf import (
    DNSAddress,
    DNSOutgoing,
    DNSPointer,
    DNSService,
    DNSText,
    const,
)
from zeroconf import (
    DNSRecord as ZcRecord,
)
from zeroconf._handlers.answers import construct_outgoing_multicast_answers

from z2z.adapters.link.packing import InstancePacker

TYPE = "_ipp._tcp.local."
TTL = 120


def _instance(n: int, host: int, txt_size: int = 600) -> tuple[DNSPointer, list[ZcRecord]]:
    name = f"Printer {n}.{TYPE}"
    server = f"host-{host}.local."
    ptr = DNSPointer(TYPE, const._TYPE_PTR, const._CLASS_IN, TTL, name)
    srv = DNSService(name, const._TYPE_SRV, const._CLASS_IN_UNIQUE, TTL, 0, 0, 631, server)
    strings = [b"k%d=" % i + b"x" * 96 for i in range(txt_size // 100)]  # 100-byte strings
    rdata = b"".join(bytes([len(s)]) + s for s in strings)
    txt = DNSText(name, const._TYPE_TXT, const._CLASS_IN_UNIQUE, TTL, rdata)
    a = DNSAddress(server, const._TYPE_A, const._CLASS_IN_UNIQUE, TTL, bytes([10, 0, 0, host + 1]))
    aaaa = DNSAddress(server, const._TYPE_AAAA, const._CLASS_IN_UNIQUE, TTL, bytes(15) + bytes([host + 1]))
    return ptr, [srv, txt, a, aaaa]


def _answer(count: int, hosts: int) -> DNSOutgoing:
    """What python-zeroconf's query handler builds for a PTR question of `TYPE`."""
    answers: dict[ZcRecord, set[ZcRecord]] = {}
    for n in range(count):
        ptr, extra = _instance(n, n % hosts)
        answers[ptr] = set(extra)
    return construct_outgoing_multicast_answers(answers)  # type: ignore[arg-type]


def _split_instances(packets: list[bytes]) -> list[str]:
    """Instances whose PTR is in a packet without their SRV, TXT or the SRV target's A/AAAA."""
    split = []
    for packet in packets:
        msg = DNSRecord.parse(packet)
        records = [*msg.rr, *msg.ar]
        have = {(str(r.rname).lower(), r.rtype) for r in records}
        for r in records:
            if r.rtype != QTYPE.PTR:
                continue
            instance = str(r.rdata.label).lower()
            srvs = [s for s in records if s.rtype == QTYPE.SRV and str(s.rname).lower() == instance]
            needs = [(instance, QTYPE.SRV), (instance, QTYPE.TXT)]
            needs += [(str(s.rdata.target).lower(), t) for s in srvs for t in (QTYPE.A, QTYPE.AAAA)]
            if any(n not in have for n in needs):
                split.append(instance)
    return split


def _records(packets: list[bytes]) -> Counter[tuple[str, int, str]]:
    seen: Counter[tuple[str, int, str]] = Counter()
    for packet in packets:
        msg = DNSRecord.parse(packet)
        for r in {(str(r.rname).lower(), r.rtype, str(r.rdata)) for r in (*msg.rr, *msg.ar)}:
            seen[r] += 1
    return seen


def test_python_zeroconf_alone_splits_instances_from_their_records() -> None:
    """The reason for the module: without it most instances of a big answer are split."""
    packets = _answer(20, hosts=5).packets()
    assert len(packets) > 2
    assert len(_split_instances(packets)) > 10


def test_each_packet_holds_whole_instances_and_nothing_is_lost() -> None:
    whole = _answer(20, hosts=5).packets()
    parts = InstancePacker().pack(_answer(20, hosts=5))
    assert parts is not None
    packets = [p for part in parts for p in part.packets()]
    assert _split_instances(packets) == []
    assert set(_records(packets)) == set(_records(whole))  # every record, in some packet
    assert all(len(p) <= const._MAX_MSG_TYPICAL for p in packets)
    # 20 instances of ~700 bytes: two a packet, not one a packet.
    assert len(packets) <= 11
    ptrs = Counter(str(r.rdata.label) for p in packets for r in DNSRecord.parse(p).rr if r.rtype == QTYPE.PTR)
    assert len(ptrs) == 20 and set(ptrs.values()) == {1}  # each PTR answered once


def test_shared_host_addresses_go_with_each_instance_that_needs_them() -> None:
    parts = InstancePacker().pack(_answer(12, hosts=1))
    assert parts is not None
    packets = [p for part in parts for p in part.packets()]
    assert _split_instances(packets) == []
    addresses = [k for k in _records(packets) if k[1] == QTYPE.A]
    assert len(addresses) == 1  # one host, one A record ...
    assert _records(packets)[addresses[0]] == len(packets)  # ... in every packet


def test_small_answers_queries_and_legacy_answers_are_left_alone() -> None:
    assert InstancePacker().pack(_answer(2, hosts=1)) is None  # fits one packet
    query = DNSOutgoing(const._FLAGS_QR_QUERY)
    ptr, _ = _instance(1, 0)
    query.add_answer_at_time(ptr, 0)
    query.add_answer_at_time(_instance(2, 0)[0], 0)
    assert InstancePacker().pack(query) is None


def test_group_sizes_are_remembered_so_the_same_answer_is_packed_once() -> None:
    packer = InstancePacker(kept=100)
    first = [p for part in packer.pack(_answer(20, hosts=5)) or () for p in part.packets()]
    assert len(packer._costs) == 20
    second = [p for part in packer.pack(_answer(20, hosts=5)) or () for p in part.packets()]
    assert second == first and len(packer._costs) == 20
    packer.pack(_answer(200, hosts=5))
    assert len(packer._costs) == 100  # bounded: the oldest are forgotten
