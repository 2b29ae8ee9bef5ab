"""What the stage machine says to other gateways: link announcements and leader records.

Two messages cross the network (docs/stages.md, "Messages"):

- an `Announcement`, carried in the TXT record of the gateway's `_z2z._udp`
  service on its link (mDNS), heard by the other gateways of its island;
- a `LeaderRecord`, put by each island leader under the network's `leaders`
  key, first in the outside rendezvous, later also in the leaders' own DHT.

Both come from strangers, so decoding is strict and bounded, and raises
`WireError` for anything else.  Also here: the derived ids every gateway of a
network must agree on (`network_id`, `leaders_key`).  In a private network
(z2z.core.security) leader records are sealed and signed: `seal_record` / `open_record`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from z2z.core.errors import Z2zError

if TYPE_CHECKING:
    from z2z.core.security import Codec

WIRE_VERSION = 1
GATEWAY_TYPE = "_z2z._udp"  # the service type of the gateways' own link announcements
MAX_CONTACTS = 3
MAX_RECORD_BYTES = 1024
MAX_HEARTBEAT_BYTES = 1024
_NODE = re.compile(r"^[0-9a-f]{16}$")
_SITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_NETWORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_CONTACT = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):([0-9]{1,5})$")
_INT63 = 2**63
_RECORD_FIELDS = {"z2z", "net", "site", "node", "contact", "structure", "size", "ts", "ttl"}


class WireError(Z2zError, ValueError):
    """An announcement or leader record that is not exactly what docs/stages.md allows.

    `reason`: ``bad-auth`` (another network secret, or none), a sealing reason of
    `SecurityError` (``sealed``, ``bad-seal``...), ``bad-signature``, or ``bad-record``.
    """

    default_reason = "bad-record"


class State(Enum):
    """Where one gateway stands; the value is what its announcement's `state` carries."""

    INIT = "init"
    STARTING = "starting"
    FOLLOWER = "follower"
    LEADER = "leader"
    INTERCONNECTED = "interconnected"
    FORMING = "forming"
    STRUCTURED = "structured"
    STOPPED = "stopped"

    @property
    def leading(self) -> bool:
        return self in LEADING

    @property
    def stage(self) -> int:
        """The design card's stage: 1 islands, 2 interconnection, 3 structure (4 = merges within 3)."""
        return _STAGE[self]


LEADING = frozenset({State.LEADER, State.INTERCONNECTED, State.FORMING, State.STRUCTURED})
_STAGE = {
    State.INIT: 0,
    State.STARTING: 1,
    State.FOLLOWER: 1,
    State.LEADER: 1,
    State.INTERCONNECTED: 2,
    State.FORMING: 3,
    State.STRUCTURED: 3,
    State.STOPPED: 0,
}
_STATES = {s.value: s for s in State if s not in (State.INIT, State.STOPPED)}


class Store(Enum):
    """Where leader records and bridged services live."""

    RENDEZVOUS = "rendezvous"  # the outside meeting point (an OpenDHT proxy or node)
    DHT = "dht"  # the leaders' own DHT (embedded OpenDHT nodes on `network_id`)


def network_id(network: str) -> int:
    """OpenDHT network id (`DhtConfig.setNetwork`, a uint32) for a z2z network name.

    First 4 bytes, big-endian, of SHA-256("z2z/netid/" + network); 0 (OpenDHT's
    public network) becomes 1.  Nodes of different ids never pair, so two z2z
    networks (or z2z and the public DHT) cannot mix even if they meet.
    """
    digest = hashlib.sha256(f"z2z/netid/{network}".encode()).digest()
    return int.from_bytes(digest[:4], "big") or 1


def leaders_key(network: str) -> bytes:
    """The 20-byte DHT key under which a network's leaders register."""
    return hashlib.sha1(f"z2z/{network}/leaders".encode()).digest()


def valid_node(node: str) -> bool:
    return bool(_NODE.match(node))


def valid_contact(contact: str) -> bool:
    m = _CONTACT.match(contact)
    return m is not None and 0 < int(m.group(1)) < 65536


@dataclass(frozen=True, slots=True)
class Announcement:
    """One gateway's `_z2z._udp` TXT: who it is, where it stands, how to reach its structure.

    `incarnation` grows at every start of the gateway and `seq` at every
    announcement within one incarnation: receivers drop anything not newer
    than what they have, so replayed or reordered packets change nothing.
    `contacts` (leaders only) are DHT contacts of *other* members of the
    leader's structure: what a follower needs to rejoin it after a takeover.
    """

    network: str
    site: str
    node: str
    rank: int
    state: State
    incarnation: int
    seq: int
    leader: str = ""  # node id of the leader it follows (its own id when leading)
    structure: str = ""  # structure id, "" before stage 3
    size: int = 0  # members of the structure as the sender counts them (informational)
    contact: str = ""  # own DHT contact "host:port"
    contacts: tuple[str, ...] = ()
    heartbeat: str = ""  # "host:port" of its heartbeat socket; "" = an older gateway (multicast only)

    @property
    def key(self) -> tuple[int, str]:
        """Election order: higher rank first, then higher node id."""
        return (self.rank, self.node)

    @property
    def version(self) -> tuple[int, int]:
        return (self.incarnation, self.seq)


def to_txt(a: Announcement) -> dict[str, str]:
    """TXT key/values for the `_z2z._udp` service (about 200 bytes)."""
    return {
        "v": str(WIRE_VERSION),
        "net": a.network,
        "site": a.site,
        "node": a.node,
        "rank": str(a.rank),
        "state": a.state.value,
        "inc": str(a.incarnation),
        "seq": str(a.seq),
        "leader": a.leader,
        "struct": a.structure,
        "size": str(a.size),
        "dht": a.contact,
        "peers": ",".join(a.contacts),
        **({"hb": a.heartbeat} if a.heartbeat else {}),
    }


def txt_size(a: Announcement) -> int:
    """Bytes of the TXT record data (each string is length-prefixed)."""
    return sum(len(k) + len(v) + 2 for k, v in to_txt(a).items())


def _int(value: str, lo: int, hi: int, name: str) -> int:
    if not re.fullmatch(r"-?[0-9]{1,20}", value):
        raise WireError(f"{name}: not an integer")
    n = int(value)
    if not lo <= n < hi:
        raise WireError(f"{name}: out of range")
    return n


def from_txt(txt: Mapping[str, str | bytes]) -> Announcement:
    """Parse a peer's TXT strictly; raises `WireError`."""
    try:
        t = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in txt.items()}
    except UnicodeDecodeError as exc:
        raise WireError("not UTF-8") from exc
    if t.get("v") != str(WIRE_VERSION):
        raise WireError("bad version")
    try:
        net, site, node, state = t["net"], t["site"], t["node"], t["state"]
        rank, inc, seq = t["rank"], t["inc"], t["seq"]
    except KeyError as exc:
        raise WireError(f"missing {exc.args[0]}") from exc
    if not _NETWORK.match(net) or not _SITE.match(site) or not _NODE.match(node):
        raise WireError("bad net, site or node")
    if state not in _STATES:
        raise WireError("bad state")
    leader, structure, contact = t.get("leader", ""), t.get("struct", ""), t.get("dht", "")
    if (leader and not _NODE.match(leader)) or (structure and not _NODE.match(structure)):
        raise WireError("bad leader or structure")
    if contact and not valid_contact(contact):
        raise WireError("bad dht contact")
    heartbeat = t.get("hb", "")
    if heartbeat and not valid_contact(heartbeat):
        raise WireError("bad heartbeat address")
    peers = t.get("peers", "")
    contacts = tuple(peers.split(",")) if peers else ()
    if len(contacts) > MAX_CONTACTS or not all(valid_contact(c) for c in contacts):
        raise WireError("bad peers")
    return Announcement(
        network=net,
        site=site,
        node=node,
        rank=_int(rank, -(2**31), 2**31, "rank"),
        state=_STATES[state],
        incarnation=_int(inc, 0, _INT63, "inc"),
        seq=_int(seq, 0, _INT63, "seq"),
        leader=leader,
        structure=structure,
        size=_int(t.get("size", "0"), 0, 2**31, "size"),
        contact=contact,
        contacts=contacts,
        heartbeat=heartbeat,
    )


@dataclass(frozen=True, slots=True)
class LeaderRecord:
    """An island leader's entry under the network's `leaders` key.

    `ts` is the writer's wall clock and `ttl` how long readers keep the record
    without a refresh (plus their clock-skew allowance).  `size` is the
    writer's own count of its structure, for `z2z status`; merge decisions
    count records instead, so a stale or boastful size cannot steer them.
    """

    network: str
    site: str
    node: str
    contact: str
    structure: str
    size: int
    ts: float
    ttl: int

    def expires(self) -> float:
        return self.ts + self.ttl


def encode_record(r: LeaderRecord) -> bytes:
    body = {
        "z2z": WIRE_VERSION,
        "net": r.network,
        "site": r.site,
        "node": r.node,
        "contact": r.contact,
        "structure": r.structure,
        "size": r.size,
        "ts": round(r.ts, 3),
        "ttl": r.ttl,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decode_record(data: bytes) -> LeaderRecord:
    """Parse a leader record strictly (≤ 1 KiB of JSON); raises `WireError`."""
    if len(data) > MAX_RECORD_BYTES:
        raise WireError("record too large")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # "[[[[…": found by fuzzing
        raise WireError("not JSON") from exc
    if not isinstance(body, dict) or set(body) != _RECORD_FIELDS or body["z2z"] != WIRE_VERSION:
        raise WireError("bad fields or version")
    strs = ("net", "site", "node", "contact", "structure")
    if not all(isinstance(body[k], str) for k in strs):
        raise WireError("bad field type")
    size, ts, ttl = body["size"], body["ts"], body["ttl"]
    if type(size) is not int or type(ttl) is not int or type(ts) not in (int, float):
        raise WireError("bad number")
    if not (0 <= size < 2**31 and 0 < ttl <= 86400 and math.isfinite(ts) and 0 <= ts < 2**40):
        raise WireError("number out of range")
    if not (_NETWORK.match(body["net"]) and _SITE.match(body["site"]) and _NODE.match(body["node"])):
        raise WireError("bad net, site or node")
    if (body["structure"] and not _NODE.match(body["structure"])) or not valid_contact(body["contact"]):
        raise WireError("bad structure or contact")
    return LeaderRecord(
        body["net"], body["site"], body["node"], body["contact"], body["structure"], size, float(ts), ttl
    )


def _txt_canonical(txt: Mapping[str, str | bytes]) -> bytes:
    items = sorted((k, v.encode() if isinstance(v, str) else v) for k, v in txt.items() if k != "auth")
    return b"\n".join(k.encode() + b"=" + v for k, v in items)


def sign_txt(txt: dict[str, str], codec: Codec) -> dict[str, str]:
    """`txt` plus ``auth`` (an HMAC with the network secret) in a private network."""
    tag = codec.link_tag(_txt_canonical(txt))
    return txt if tag is None else {**txt, "auth": tag}


def check_txt(txt: Mapping[str, str | bytes], codec: Codec) -> None:
    """WireError unless `txt` carries the right ``auth`` (private network; public: anything goes)."""
    import hmac

    expected = codec.link_tag(_txt_canonical(txt))
    if expected is None:
        return
    got = txt.get("auth", b"")
    got_bytes = got.encode() if isinstance(got, str) else got
    if not hmac.compare_digest(got_bytes, expected.encode()):
        raise WireError("bad or missing auth (another network secret, or none)", "bad-auth")


def encode_heartbeat(a: Announcement, codec: Codec, *, bye: bool = False) -> bytes:
    """A heartbeat datagram: the announcement's TXT pairs (with ``auth`` when private) as JSON.

    The same pairs and the same HMAC as the multicast TXT, so a heartbeat is
    exactly as trustworthy as an announcement and is checked by the same code;
    the (inc, seq) replay guard of the island drops replays.
    """
    pairs = {**to_txt(a), "bye": "1"} if bye else to_txt(a)
    return json.dumps(sign_txt(pairs, codec), separators=(",", ":")).encode()


def decode_heartbeat(data: bytes, codec: Codec) -> tuple[Announcement, bool]:
    """(announcement, is a goodbye) of a heartbeat datagram, parsed strictly (≤ 1 KiB JSON
    object of strings); raises `WireError`."""
    if len(data) > MAX_HEARTBEAT_BYTES:
        raise WireError("heartbeat too large")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise WireError("not JSON") from exc
    if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
        raise WireError("not an object of strings")
    check_txt(body, codec)
    bye = body.get("bye")
    if bye not in (None, "1"):
        raise WireError("bad bye")
    return from_txt(body), bye == "1"


def seal_record(r: LeaderRecord, codec: Codec) -> bytes:
    """What a leader puts under `codec.leaders_key()`: the record, sealed and signed if private."""
    return codec.seal(encode_record(r), codec.leaders_key())


def open_record(data: bytes, codec: Codec) -> tuple[LeaderRecord, bytes | None]:
    """(record, signer's public key or None in public mode); `WireError` naming the reason.

    The signature is checked here; whether the signer may speak for the record's
    site is the trust policy's call (the caller's).
    """
    from z2z.core.security import SecurityError

    try:
        opened = codec.open(data, codec.leaders_key())
    except SecurityError as exc:
        raise WireError(str(exc), exc.reason) from None
    record = decode_record(opened.body)
    if not codec.verify(opened):
        raise WireError("bad-signature", "bad-signature")
    return record, opened.signer
