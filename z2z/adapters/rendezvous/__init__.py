"""The rendezvous side of the gateway: an OpenDHT-compatible put/get/listen store.

Two implementations exist: the OpenDHT REST proxy spoken over httpx
(`z2z.adapters.rendezvous.proxy`) and an embedded OpenDHT node (`z2z.adapters.rendezvous.embedded`).
Both carry opaque bytes; what the bytes mean is `z2z.core.wire.envelope`'s business.
`open_rendezvous` picks one from a URL, the way users write it in the config.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from z2z.adapters.rendezvous.base import (
    DhtValue,
    ListenCallback,
    ListenHandle,
    PutNotConfirmed,
    Rendezvous,
    RendezvousError,
)
from z2z.adapters.rendezvous.embedded import DEFAULT_PORT, EmbeddedRendezvous
from z2z.adapters.rendezvous.proxy import ProxyRendezvous

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_PORT",
    "DhtValue",
    "EmbeddedRendezvous",
    "ListenCallback",
    "ListenHandle",
    "ProxyRendezvous",
    "PutNotConfirmed",
    "Rendezvous",
    "RendezvousError",
    "open_rendezvous",
    "parse_bootstrap",
]

# The public OpenDHT network run by Jami; used only when no rendezvous is configured.
DEFAULT_BOOTSTRAP = ("bootstrap.jami.net", DEFAULT_PORT)

_USAGE = (
    "expected http://host:port (an OpenDHT REST proxy) or "
    "opendht://host[:port][,host[:port]...] (an embedded node bootstrapping there)"
)


def parse_bootstrap(hosts: str) -> list[tuple[str, int]]:
    """``host[:port][,host[:port]...]`` (IPv6 as ``[addr]:port``) → [(host, port)].

    The port defaults to OpenDHT's 4222.  Raises ValueError with the culprit.
    """
    out: list[tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"empty host in {hosts!r}")
        if item.startswith("["):
            host, sep, rest = item[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError(f"bad IPv6 host {item!r} (write [addr]:port)")
            port_text = rest[1:] if rest else ""
        elif item.count(":") > 1:
            raise ValueError(f"IPv6 address {item!r} must be bracketed: [addr]:port")
        else:
            host, _, port_text = item.partition(":")
        if not host or any(c in host for c in "/?#@ "):
            raise ValueError(f"bad host in {item!r}")
        port = DEFAULT_PORT
        if port_text or item.endswith(":"):
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ValueError(f"bad port in {item!r}")
            port = int(port_text)
        out.append((host, port))
    return out


def open_rendezvous(url: str | None) -> Rendezvous:
    """The rendezvous named by `url`; not started yet (call ``await r.start()``).

    - ``http://host:port`` (or https): `ProxyRendezvous`.
    - ``opendht://host[:port][,host[:port]...][?port=N&network=N]``: an
      `EmbeddedRendezvous` bootstrapping to those nodes (port 4222 by default),
      optionally on local UDP port ``port`` and in OpenDHT network ``network``.
    - None: an embedded node bootstrapping to the public network
      (bootstrap.jami.net:4222).

    Raises ValueError, with what was expected, for anything else.
    """
    if url is None:
        return EmbeddedRendezvous([DEFAULT_BOOTSTRAP])
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(f"rendezvous URL {url!r} has no scheme: {_USAGE}")
    if scheme in ("http", "https"):
        if not rest or rest.startswith(("/", ":")):
            raise ValueError(f"rendezvous URL {url!r} has no host: {_USAGE}")
        return ProxyRendezvous(text)
    if scheme != "opendht":
        raise ValueError(f"unsupported rendezvous URL {url!r}: {_USAGE}")
    hosts, _, query = rest.partition("?")
    hosts = hosts.rstrip("/")
    if not hosts:
        raise ValueError(f"rendezvous URL {url!r} names no bootstrap node: {_USAGE}")
    try:
        bootstrap = parse_bootstrap(hosts)
    except ValueError as exc:
        raise ValueError(f"rendezvous URL {url!r}: {exc}; {_USAGE}") from None
    options = {"port": 0, "network": 0}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in options:
            raise ValueError(f"rendezvous URL {url!r}: unknown option {name!r} (port, network)")
        if not value.isdigit():
            raise ValueError(f"rendezvous URL {url!r}: {name} must be a number")
        options[name] = int(value)
    if options["port"] > 65535 or options["network"] >= 2**32:
        raise ValueError(f"rendezvous URL {url!r}: port or network out of range")
    return EmbeddedRendezvous(bootstrap, port=options["port"], network_id=options["network"])
