"""mDNS link backends and the one place that picks between them.

`open_link` is the edge where a backend is chosen (as httpx picks a transport):
``avahi`` talks to avahi-daemon over D-Bus (`z2z.adapters.link.avahi`), ``zeroconf`` runs
python-zeroconf in-process (`z2z.adapters.link.zeroconf`), ``auto`` prefers Avahi when the
daemon is on the system bus and serves our interfaces, because on a host where
avahi-daemon runs it should own mDNS alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from z2z.adapters.link.base import LinkBackend, LinkError, LinkListener

__all__ = ["MODES", "LinkBackend", "LinkError", "LinkListener", "open_link"]

MODES = ("auto", "avahi", "zeroconf")

log = logging.getLogger(__name__)


def open_link(
    mode: str = "auto", interfaces: Sequence[str] = (), subtypes: Sequence[str] = ()
) -> LinkBackend:
    """The link backend for `mode` (``auto``, ``avahi`` or ``zeroconf``); not started yet.

    ``auto`` checks the system bus (``DBUS_SYSTEM_BUS_ADDRESS`` is honoured) for
    org.freedesktop.Avahi and that the daemon sees our interfaces; otherwise, or
    when python3-avahi/dbus/gi are missing, it falls back to python-zeroconf and
    logs why.  Raises LinkError for unknown interfaces or a missing Avahi module
    when ``avahi`` is asked for explicitly, ValueError for an unknown mode.
    `subtypes` (``_universal._sub._ipp._tcp``...) are browsed with their types.
    """
    mode = mode.strip().lower()
    if mode not in MODES:
        raise ValueError(f"unknown mDNS backend {mode!r} (expected one of {', '.join(MODES)})")
    if mode in ("auto", "avahi"):
        try:
            from z2z.adapters.link.avahi import AvahiLink, probe_avahi
        except ImportError as exc:
            if mode == "avahi":
                raise LinkError(
                    f"the Avahi backend needs python3-avahi, python3-dbus and python3-gi ({exc})"
                ) from None
            log.info("mDNS through python-zeroconf: the Avahi backend is not installed (%s)", exc)
        else:
            if mode == "avahi":
                return AvahiLink(interfaces, subtypes=subtypes)
            reason = probe_avahi(interfaces)
            if reason is None:
                log.info("mDNS through avahi-daemon (D-Bus)")
                return AvahiLink(interfaces, subtypes=subtypes)
            log.debug("mDNS through python-zeroconf: %s", reason)
    from z2z.adapters.link.zeroconf import ZeroconfLink

    return ZeroconfLink(interfaces, subtypes=subtypes)
