"""Fuzz target: the config loader (`z2z.app.config.load_file`, then `build`).

Whatever the file holds, only `ConfigError` (one line, for the admin) may come
out.  The bytes are written to a file in a RAM-backed folder and loaded from
there, as `z2z run --config` does.
"""

from __future__ import annotations

import os
import tempfile

from common import fuzz, instrumented

with instrumented():
    from z2z.app.config import ConfigError, build, load_file

_DIR = tempfile.mkdtemp(prefix="z2z-fuzz-config-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
PATH = os.path.join(_DIR, "z2z.toml")


def one_input(data: bytes) -> None:
    with open(PATH, "wb") as fh:
        fh.write(data)
    try:
        settings = load_file(PATH)
        build(settings, {})
    except ConfigError as exc:
        assert "\n" not in str(exc), repr(str(exc))


def seeds() -> list[bytes]:
    return [
        b'site = "campus-a"\nrendezvous = "http://10.0.0.1:8080"\ntype = ["_ipp._tcp", "*"]\n',
        b"ttl = 120\nrefresh = 40.5\nmax-skew = 0\nelection = false\nrank = -3\ndht-port = 4222\n",
        b'instance-template = "{instance} ({site})"\nhost-template = "{host}-{site}"\n',
        b'network-secret = "/etc/z2z/net.secret"\ntrust = "explicit"\n'
        b'trusted-sites = { campus-a = "8Xn0mO3H1y0kq5ZbqvJ2m7n4YfXo3bZ9mHh0QFv3y0E=" }\n'
        b'site-allow = { campus-a = ["10.1.0.0/16", "2001:db8::/32"], "*" = "10.0.0.0/8" }\n',
        b'export-deny = ["Test *"]\nimport-from = ["campus-[ab]"]\ndns-listen = "[::1]:5353"\n'
        b'dns-domain = "z2z.home.arpa."\nhttp-listen = 8464\nmetrics-listen = "127.0.0.1:9464"\n',
        b"[sites.a]\nallow = 1\n",
    ]


if __name__ == "__main__":
    fuzz(one_input, seeds)
