"""Property tests (hypothesis): hostile input to every parser a stranger can reach.

For each parser, random and mutated inputs may only end in the exceptions it
documents, never in anything else, and every example must finish within the
deadline (a hang fails the test).  The coverage-guided counterpart is fuzz/
(tests/unit/test_fuzz.py, `make fuzz`).
"""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from z2z.adapters.dns import DnsSdZone
from z2z.app.config import FIELDS, ConfigError, build, check_settings, load_file
from z2z.core.bridge import Bridge, BridgeSettings, Publish, Reject, TrustNews
from z2z.core.records import Service
from z2z.core.security import MAGIC, NONCE_BYTES, Codec, SecurityError
from z2z.core.wire import envelope as protocol
from z2z.core.wire.envelope import Envelope, ProtocolError
from z2z.core.wire.gateways import WireError, open_record

T = "_ipp._tcp"
NOW = 1_800_000_000.0
SVC = Service(
    T, "Campus Printer", "printer", 631, (b"rp=ipp/print", b"note=Floor 2"), ("10.1.0.9", "2001:db8::9")
)
ENV = Envelope("z2z", "campus-a", "0123456789abcdef", 1_800_000_000_000, NOW, 120, False, SVC)
BODY = protocol.encode(ENV)
DOC = json.loads(BODY)
SECRET = bytes(range(32))
KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
CODEC = Codec("z2z", SECRET, KEY)
READER = Codec("z2z", SECRET)
TYPE_KEY = CODEC.type_key(T)
SEALED = CODEC.seal(BODY, TYPE_KEY)

PROPS = settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with a few random edits: overwrite, cut, insert, splice."""
    w = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 3))
        i = draw(st.integers(0, max(0, len(w) - 1)))
        if op == 0 and w:
            w[i] = draw(st.integers(0, 255))
        elif op == 1:
            del w[i:]
        elif op == 2:
            w[i:i] = draw(st.binary(min_size=1, max_size=12))
        elif w:
            j = draw(st.integers(i, len(w)))
            w[i:i] = w[i:j] * draw(st.integers(1, 4))
    return bytes(w)


@st.composite
def envelope_docs(draw: st.DrawFn) -> bytes:
    """A valid envelope's JSON with fields dropped, added or replaced by random JSON."""
    doc: dict[str, Any] = dict(DOC)
    for name in draw(st.lists(st.sampled_from([*DOC, "sig", "extra"]), max_size=4)):
        if draw(st.booleans()):
            doc.pop(name, None)
        else:
            doc[name] = draw(json_values)
    return json.dumps(doc).encode()


def only(exc: type[BaseException] | tuple[type[BaseException], ...], fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except exc:
        return None


# -- the value decoder -----------------------------------------------------------------


@PROPS
@given(st.binary(max_size=9000) | mutated(BODY) | envelope_docs())
@example(BODY.replace(b'"dns":"', b'"dns":"\xc3\xa9'))  # non-ASCII base64: once a ValueError
def test_decode_raises_only_protocol_error(data: bytes) -> None:
    env = only(ProtocolError, protocol.decode, data)
    if env is not None:
        assert protocol.decode(protocol.encode(env)).service == env.service


# -- the sealed envelope -------------------------------------------------------------------


@PROPS
@given(st.binary(max_size=9000) | mutated(SEALED) | st.binary(max_size=200).map(lambda b: MAGIC + b))
def test_open_raises_only_security_error(data: bytes) -> None:
    opened = only(SecurityError, READER.open, data, TYPE_KEY)
    if opened is not None:  # only the untouched value passes the tag
        assert data == SEALED and READER.verify(opened)


def _seal_any(plain: bytes, key: bytes) -> bytes:
    """Seal arbitrary plaintext with the network secret: what a rogue member could put."""
    assert CODEC._aead is not None
    nonce = b"\x03" * NONCE_BYTES
    return MAGIC + nonce + CODEC._aead.encrypt(nonce, plain, MAGIC + key)


@PROPS
@given(st.binary(max_size=600) | mutated((CODEC.public_key or b"") + bytes(64) + BODY))
def test_rogue_member_plaintext_is_refused_cleanly(plain: bytes) -> None:
    sealed = _seal_any(plain, TYPE_KEY)
    opened = only(SecurityError, READER.open, sealed, TYPE_KEY)  # right tag: the rest is judged alone
    if opened is not None:
        assert not READER.verify(opened)  # nobody signed this
        only(ProtocolError, protocol.decode, opened.body)
    only(WireError, open_record, _seal_any(plain, READER.leaders_key()), READER)


@settings(max_examples=300, deadline=2000)
@given(
    st.binary(max_size=2000) | mutated(SEALED) | st.binary(max_size=600).map(lambda p: _seal_any(p, TYPE_KEY))
)
def test_bridge_never_raises_on_dht_values(data: bytes) -> None:
    b = Bridge(
        BridgeSettings(site="campus-b", network="z2z", node="fedcba9876543210", types=(T,)),
        codec=Codec("z2z", SECRET, Ed25519PrivateKey.from_private_bytes(b"\x02" * 32)),
    )
    actions = b.remote_value(T, data, NOW)
    assert all(isinstance(a, Reject | Publish | TrustNews) for a in actions)
    assert sum(b.stats.rejected.values()) + len(b.imports()) <= 1


# -- leader records, link announcements, proxy lines ----------------------------------------


RECORD = (
    b'{"z2z":1,"net":"z2z","site":"a","node":"0123456789abcdef","contact":"10.0.0.1:4222",'
    b'"structure":"","size":1,"ts":1800000000.0,"ttl":120}'
)


@PROPS
@given(st.binary(max_size=1100) | mutated(RECORD) | st.integers(1, 1100).map(lambda n: b"[" * n))
@example(b"[" * 1000)  # once a RecursionError out of decode_record (found by fuzzing)
def test_leader_record_decoder_raises_only_wire_error(data: bytes) -> None:
    from z2z.core.wire.gateways import decode_record

    only(WireError, decode_record, data)


@PROPS
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "v",
                "net",
                "site",
                "node",
                "rank",
                "state",
                "inc",
                "seq",
                "leader",
                "struct",
                "size",
                "dht",
                "peers",
                "auth",
                "x",
            ]
        ),
        st.binary(max_size=40)
        | st.sampled_from([b"1", b"leader", b"0123456789abcdef", b"z2z", b"10.0.0.1:4222", b"-5"]),
    )
)
def test_announcement_decoder_raises_only_wire_error(txt: dict[str, bytes]) -> None:
    from z2z.core.wire.gateways import check_txt, from_txt

    only(WireError, from_txt, txt)
    only(WireError, check_txt, txt, READER)


@PROPS
@given(
    st.binary(max_size=4096)
    | st.integers(1, 4000).map(lambda n: b"[" * n)
    | mutated(b'{"idx":1,"net":"z2z","site":"a","ts":1800000000.0,"ttl":120,"types":["_ipp._tcp"],"z2z":1}')
)
@example(b"[" * 4000)  # once a RecursionError
def test_type_index_decoder_raises_only_its_error(data: bytes) -> None:
    from z2z.core.typeindex import TypeIndexError, decode

    only(TypeIndexError, decode, data)


@PROPS
@given(
    st.binary(max_size=2000)
    | st.integers(1, 3000).map(lambda n: b"[" * n)
    | mutated(b'{"data":"eyJ9","id":"42","type":0,"seq":1}')
)
def test_proxy_lines_never_raise(line: bytes) -> None:
    from collections import Counter

    from z2z.adapters.rendezvous.proxy import parse_value_line

    parse_value_line(line, Counter())


# -- the unicast DNS server's query parser ---------------------------------------------


ZONE = DnsSdZone(
    "z2z.home.arpa.", [SVC, Service("_daap._tcp", "Music", "nas", 3689, (b"x" * 250,) * 8, ("10.1.0.20",))]
)
QUERY = (
    bytes.fromhex("abcd01000001000000000001")
    + b"\x04_ipp\x04_tcp\x03z2z\x04home\x04arpa\x00"
    + b"\x00\x0c\x00\x01"
    + b"\x00\x00\x29\x10\x00\x00\x00\x80\x00\x00\x00"
)


@st.composite
def dns_queries(draw: st.DrawFn) -> bytes:
    """A header with random flags and counts, then random labels (some pointers), type and class."""
    head = draw(st.binary(min_size=12, max_size=12))
    labels = draw(st.lists(st.binary(max_size=70), max_size=8))
    end = draw(st.sampled_from([b"\x00", b"\xc0\x0c", b"\xc0"]))
    name = b"".join(bytes([min(len(lbl), 255)]) + lbl for lbl in labels) + end
    return head + name + draw(st.binary(max_size=30))


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@PROPS
@given(data=st.binary(max_size=600) | mutated(QUERY) | dns_queries(), limit=st.sampled_from([512, 65535]))
def test_dns_answer_never_raises(data: bytes, limit: int) -> None:
    errors = _Errors()
    logger = logging.getLogger("z2z.adapters.dns.zone")
    logger.addHandler(errors)
    try:
        out = ZONE.answer(data, limit)
    finally:
        logger.removeHandler(errors)
    assert not errors.records, "answer() had to swallow an exception"
    if out is not None:
        assert out[:2] == data[:2] and out[2] & 0x80 and len(out) <= max(limit, ZONE.max_udp_payload)


# -- the config loader -----------------------------------------------------------------


keys = st.sampled_from(sorted(FIELDS)) | st.text(string.ascii_lowercase + "-", max_size=12)
config_values = (
    json_values
    | st.lists(st.text(max_size=30), max_size=4)
    | st.sampled_from(
        ["{site}", "{host.real}", "{site!z}", "{0}", "http://x:1", "opendht://[::1]:1", "10.0.0.0/8", "*", ""]
    )
)


@PROPS
@given(st.dictionaries(keys, config_values, max_size=6))
@example({"host-template": "{host.real}-{site}"})  # once an AttributeError
@example({"instance-template": "{site.__class__}"})
def test_check_settings_raises_only_config_error(doc: dict[str, Any]) -> None:
    settings_ = only(ConfigError, check_settings, doc)
    if settings_ is not None:
        only(ConfigError, build, settings_, {})


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if value is None:
        return '""'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value != value:
        return "nan"
    return json.dumps(value)


@st.composite
def toml_files(draw: st.DrawFn) -> bytes:
    doc = draw(st.dictionaries(keys, config_values, max_size=6))
    text = "".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in doc.items())
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=300, deadline=2000)
@given(
    toml_files()
    | mutated(b'site = "a"\ntype = ["_ipp._tcp"]\ntrusted-sites = { a = "x" }\n')
    | st.binary(max_size=300)
)
def test_load_file_raises_only_config_error(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = Path(tmp_path_factory.getbasetemp()) / "fuzz.toml"
    path.write_bytes(data)
    try:
        build(load_file(path), {})
    except ConfigError as exc:
        assert "\n" not in str(exc)
