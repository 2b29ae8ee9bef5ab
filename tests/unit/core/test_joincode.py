"""Join codes (z2z.core.joincode): round trip, and every kind of damage is caught."""

from __future__ import annotations

import random

import pytest

from z2z.core import joincode
from z2z.core.joincode import JoinCodeError

SECRET = bytes(range(32))


def test_round_trip_and_shape() -> None:
    for network in ("z2z", "acme-printers", "a" * 63, "x.y_z"):
        code = joincode.encode(SECRET, network)
        assert code.startswith("z2z-") and " " not in code and code == code.strip()
        assert joincode.MIN_LENGTH <= len(code) <= joincode.MAX_LENGTH
        assert joincode.decode(code) == (SECRET, network)
        assert joincode.decode(f"  {code.upper()}\n") == (SECRET, network)  # case and blanks do not matter


def test_every_single_character_change_is_caught() -> None:
    code = joincode.encode(SECRET, "acme-printers")
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    for i in range(len("z2z-"), len(code)):
        for c in alphabet:
            if c != code[i]:
                with pytest.raises(JoinCodeError):
                    joincode.decode(code[:i] + c + code[i + 1 :])


def test_truncated_extended_and_swapped_codes_are_caught() -> None:
    code = joincode.encode(SECRET, "acme-printers")
    for n in range(len(code)):
        with pytest.raises(JoinCodeError):
            joincode.decode(code[:n])
    for extra in "a27":
        with pytest.raises(JoinCodeError):
            joincode.decode(code + extra)
    for i in range(len("z2z-"), len(code) - 1):
        if code[i] != code[i + 1]:
            with pytest.raises(JoinCodeError):
                joincode.decode(code[:i] + code[i + 1] + code[i] + code[i + 2 :])


def test_junk_gives_one_line_without_echoing_it() -> None:
    rng = random.Random(13)
    junk = [
        "",
        " ",
        "hello",
        "z2z-",
        "z2z-" + "a" * 200,
        "z2z-" + "0" * 70,
        "z2z-" + "a" * 30 + "\n" + "b" * 40,
        "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(10_000)),
        "z2z-" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(70)),
        "z2z-" + "".join(chr(rng.randrange(0x80, 0x2FFF)) for _ in range(70)),
    ]
    for text in junk:
        with pytest.raises(JoinCodeError) as err:
            joincode.decode(text)
        message = str(err.value)
        assert "\n" not in message and len(message) < 200, message


def test_unknown_version_and_bad_names_are_refused() -> None:
    import base64
    import hashlib

    def forge(payload: bytes) -> str:
        raw = payload + hashlib.sha256(payload).digest()[:4]
        return "z2z-" + base64.b32encode(raw).decode().rstrip("=").lower()

    with pytest.raises(JoinCodeError, match="version 2"):
        joincode.decode(forge(bytes([2]) + SECRET + b"net"))
    with pytest.raises(JoinCodeError, match="network name"):
        joincode.decode(forge(bytes([1]) + SECRET + b"bad name"))
    with pytest.raises(JoinCodeError, match="UTF-8"):
        joincode.decode(forge(bytes([1]) + SECRET + b"\xff\xfe"))
    with pytest.raises(ValueError):
        joincode.encode(SECRET[:31], "z2z")
    with pytest.raises(ValueError):
        joincode.encode(SECRET, "no spaces please")
