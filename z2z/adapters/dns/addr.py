"""Listen addresses: ``ADDR:PORT``, ``[v6]:PORT`` or ``name:PORT``, as the config and flags write them."""

from __future__ import annotations

import ipaddress
import re

_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?$")


def parse_listen(text: str, default_port: int | None = None) -> tuple[str, int]:
    """Split ``ADDR:PORT``, ``[v6]:PORT`` or ``name:PORT`` (``ADDR`` alone with a default port).

    IPv6 addresses need brackets, because ``::1:53`` is ambiguous.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty listen address (expected e.g. 127.0.0.1:5353 or [::1]:5353)")
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError(f"listen address {text!r}: missing ']' after the IPv6 address")
        host, rest = s[1:end], s[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"listen address {text!r}: {host!r} is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise ValueError(f"listen address {text!r}: expected ':PORT' after ']'")
        port_text: str | None = rest[1:] if rest else None
    else:
        if s.count(":") > 1:
            raise ValueError(f"listen address {text!r}: put IPv6 addresses in brackets, e.g. [::1]:5353")
        host, sep, after = s.partition(":")
        port_text = after if sep else None
        if not host:
            raise ValueError(f"listen address {text!r}: missing address before ':'")
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            if not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
                raise ValueError(
                    f"listen address {text!r}: {host!r} is neither an address nor a host name"
                ) from None
    if port_text is None:
        if default_port is None:
            raise ValueError(f"listen address {text!r}: missing ':PORT'")
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"listen address {text!r}: port must be a number from 0 to 65535")
    return host, int(port_text)
