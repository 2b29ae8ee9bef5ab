"""Fuzz target: the format-1 value decoder (`z2z.core.wire.envelope.decode`).

Only `ProtocolError` may come out; whatever decodes must re-encode and decode
to the same envelope (the codec is its own inverse on everything it accepts).
"""

from __future__ import annotations

from common import fuzz, instrumented

with instrumented():
    from z2z.core.records import Service
    from z2z.core.wire import envelope as protocol
    from z2z.core.wire.envelope import Envelope, ProtocolError


def one_input(data: bytes) -> None:
    try:
        env = protocol.decode(data)
    except ProtocolError:
        return
    again = protocol.decode(protocol.encode(env))
    assert again.service == env.service and again.seq == env.seq, (env, again)


def seeds() -> list[bytes]:
    svc = Service(
        "_ipp._tcp",
        "Campus Printer.2 \\ é",
        "printer",
        631,
        (b"txtvers=1", b"rp=ipp/print", b"", b"bin=\x00\xff"),
        ("10.1.0.9", "2001:db8::9"),
    )
    out = []
    for gone in (False, True):
        env = Envelope("z2z", "campus-a", "0123456789abcdef", 1_800_000_000_000, 1.8e9, 120, gone, svc)
        out.append(protocol.encode(env))
    out.append(
        protocol.encode(
            Envelope("z2z", "b", "fedcba9876543210", 0, 1.0, 1, False, Service("_daap._tcp", "x", "h", 1))
        )
    )
    return out


if __name__ == "__main__":
    fuzz(one_input, seeds)
