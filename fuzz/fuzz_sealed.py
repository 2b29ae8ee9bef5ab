"""Fuzz target: the private-network envelope (`z2z.core.security.Codec.open` / `verify`,
then `protocol.decode`) and sealed leader records (`stages.wire.open_record`).

The first byte picks what the rest is:
- 0-63: a raw DHT value handed to `Codec.open` (outsider's view: almost all
  of it must stop at the AEAD tag);
- 64-127: a plaintext sealed with the right secret and key, so the fuzzer
  reaches what lies behind the tag (signer, signature, envelope) like a rogue
  member of the network would;
- 128-159: a raw leader record as a public network reads it (`decode_record`);
- 160-191: a plaintext sealed as a leader record under the leaders key;
- 192-255: a valid sealed value with these bytes XORed in (tampering).

Allowed exceptions: `SecurityError`, `ProtocolError`, `WireError`.
"""

from __future__ import annotations

from common import fuzz, instrumented

with instrumented():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from z2z.core.records import Service
    from z2z.core.security import MAGIC, NONCE_BYTES, Codec, SecurityError
    from z2z.core.wire import envelope as protocol
    from z2z.core.wire.envelope import Envelope, ProtocolError
    from z2z.core.wire.gateways import LeaderRecord, WireError, encode_record, open_record

SECRET = bytes(range(32))
KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
CODEC = Codec("z2z", SECRET, KEY, nonce=lambda n: b"\x01" * n)
READER = Codec("z2z", SECRET)
PUBLIC = Codec("z2z")
TYPE_KEY = CODEC.type_key("_ipp._tcp")
SVC = Service("_ipp._tcp", "Printer", "printer", 631, (b"rp=ipp/print",), ("10.1.0.9",))
ENV = Envelope("z2z", "campus-a", "0123456789abcdef", 5, 1.8e9, 120, False, SVC)
BODY = protocol.encode(ENV)
SEALED = CODEC.seal(BODY, TYPE_KEY)
RECORD = encode_record(
    LeaderRecord("z2z", "campus-a", "0123456789abcdef", "10.1.0.2:4222", "", 1, 1.8e9, 120)
)


def _seal_raw(plain: bytes, key: bytes) -> bytes:
    assert CODEC._aead is not None
    nonce = b"\x02" * NONCE_BYTES
    return MAGIC + nonce + CODEC._aead.encrypt(nonce, plain, MAGIC + key)


def _value(data: bytes) -> None:
    try:
        opened = READER.open(data, TYPE_KEY)
        env = protocol.decode(opened.body)
    except (SecurityError, ProtocolError):
        return
    if READER.verify(opened):  # only what the site key really signed may verify
        assert opened.signer == CODEC.public_key and env == ENV  # (the DNS id inside is random)


def one_input(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0], data[1:]
    if mode < 64:
        _value(rest)
    elif mode < 128:
        _value(_seal_raw(rest, TYPE_KEY))
    elif mode < 160:
        try:
            open_record(rest, PUBLIC)
        except WireError:
            return
    elif mode < 192:
        try:
            record, signer = open_record(_seal_raw(rest, READER.leaders_key()), READER)
        except WireError:
            return
        assert signer == CODEC.public_key and encode_record(record) == RECORD
    else:
        tampered = bytes(a ^ b for a, b in zip(SEALED, rest.ljust(len(SEALED), b"\0"), strict=False))
        tampered += rest[len(SEALED) :]
        _value(tampered)


def seeds() -> list[bytes]:
    pub = CODEC.public_key or b""
    good_sig = READER.open(SEALED, TYPE_KEY).signature
    record_sealed = CODEC.seal(RECORD, CODEC.leaders_key())
    rec_opened = READER.open(record_sealed, READER.leaders_key())
    return [
        b"\x00" + SEALED,
        b"\x00" + BODY,
        b"\x40" + pub + good_sig + BODY,  # a valid value, behind the tag
        b"\x40" + pub + bytes(64) + BODY,
        b"\x80" + RECORD,
        b"\x80" + b"[" * 1100,  # once a RecursionError out of decode_record
        b"\xa0" + pub + rec_opened.signature + RECORD,
        b"\xc0",
        b"\xc0" + b"\x00" * 30 + b"\x01",
    ]


if __name__ == "__main__":
    fuzz(one_input, seeds)
