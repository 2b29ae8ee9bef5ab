"""Join codes: a private network's secret and name in one copy-pasteable, typo-proof token.

`z2z invite` prints one, `z2z join CODE` stores it.  Pure: text in, bytes out.

Version 1 is ``z2z-`` followed by base32 (RFC 4648, lower case, no padding) of::

    version (1 byte, = 1) | secret (32 bytes) | network name (UTF-8, 1..63 bytes) | check (4 bytes)

where ``check`` is the first 4 bytes of SHA-256 over everything before it.  Base32
because it has no characters that shells, mail clients or URLs mangle and it
survives a change of case; the checksum makes a mistyped, lost or extra character
fail with probability 1 - 2^-32; and a code must be the canonical encoding of
what it decodes to, so even a change in the unused low bits of the last character
is refused.  Every refusal is a `JoinCodeError` whose message is one line and never
echoes the input (it may be 10 kB of anything).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from z2z.core.errors import Z2zError
from z2z.core.security import SECRET_BYTES
from z2z.core.wire.envelope import valid_site

PREFIX = "z2z-"
VERSION = 1
CHECK_BYTES = 4
MAX_NETWORK_BYTES = 63
# The shortest and longest possible version-1 codes, in characters.
MIN_LENGTH = len(PREFIX) + -(-(1 + SECRET_BYTES + 1 + CHECK_BYTES) * 8 // 5)
MAX_LENGTH = len(PREFIX) + -(-(1 + SECRET_BYTES + MAX_NETWORK_BYTES + CHECK_BYTES) * 8 // 5)
_BASE32 = re.compile(r"[a-z2-7]*")


class JoinCodeError(Z2zError, ValueError):
    """A code that is not a valid join code; the message is one line for the admin."""

    default_reason = "bad-join-code"


def _check(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()[:CHECK_BYTES]


def encode(secret: bytes, network: str) -> str:
    """The join code of network `network` with secret `secret`."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"a network secret is {SECRET_BYTES} bytes")
    name = network.encode("utf-8")
    if not valid_site(network) or len(name) > MAX_NETWORK_BYTES:
        raise ValueError(f"{network!r} is not a valid network name")
    payload = bytes([VERSION]) + secret + name
    text = base64.b32encode(payload + _check(payload)).decode("ascii").rstrip("=").lower()
    return PREFIX + text


def decode(code: str) -> tuple[bytes, str]:
    """(secret, network name) of a join code; JoinCodeError saying what is wrong with it."""
    code = code.strip().lower()
    if not code:
        raise JoinCodeError("the join code is empty (copy it from `z2z invite` on a gateway of the network)")
    if not code.startswith(PREFIX):
        raise JoinCodeError(f"not a z2z join code: it must start with {PREFIX!r} (copy it from `z2z invite`)")
    if not MIN_LENGTH <= len(code) <= MAX_LENGTH:
        raise JoinCodeError(
            f"not a z2z join code: {len(code)} characters, a code has {MIN_LENGTH} to {MAX_LENGTH} "
            "(was it cut short? copy the whole line)"
        )
    body = code[len(PREFIX) :]
    if _BASE32.fullmatch(body) is None:
        where = next(i for i, c in enumerate(body) if not _BASE32.fullmatch(c))
        position = where + len(PREFIX) + 1
        raise JoinCodeError(f"not a z2z join code: character {position} ({body[where]!r}) is not a-z or 2-7")
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        raise JoinCodeError(
            "the join code is damaged: a character is missing or extra (copy the whole line)"
        ) from None
    payload, check = raw[:-CHECK_BYTES], raw[-CHECK_BYTES:]
    if len(raw) < 1 + SECRET_BYTES + 1 + CHECK_BYTES or check != _check(payload):
        raise JoinCodeError("the join code is damaged: its checksum does not match (a typo? copy it again)")
    if PREFIX + base64.b32encode(raw).decode("ascii").rstrip("=").lower() != code:
        raise JoinCodeError("the join code is damaged: its last character is wrong (a typo? copy it again)")
    if payload[0] != VERSION:
        raise JoinCodeError(f"join code version {payload[0]} is not known here (made by a newer z2z?)")
    secret, name = payload[1 : 1 + SECRET_BYTES], payload[1 + SECRET_BYTES :]
    try:
        network = name.decode("utf-8")
    except UnicodeDecodeError:
        raise JoinCodeError("the join code carries a network name that is not UTF-8") from None
    if not valid_site(network):
        raise JoinCodeError("the join code carries an invalid network name")
    return secret, network
