"""Checks of single config values: each takes (key, raw value) and returns the value to run with.

A bad value raises `ConfigError` naming the key, in one line meant for the admin.
The TOML file and the flags go through the same checks (z2z.app.config.schema).
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Callable
from typing import Any

from z2z.core.errors import Z2zError
from z2z.core.policy import WILDCARD
from z2z.core.records import RecordError, normalize_type, parse_subtype
from z2z.core.security import SecurityError, format_public_key, parse_public_key
from z2z.core.wire.envelope import valid_site

LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Z2zError, ValueError):
    """A bad flag, key or value; the message is one line meant for the admin."""

    default_reason = "config"


def text(key: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{key}: expected a non-empty string, got {v!r}")
    return v


def texts(key: str, v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list | tuple) or not all(isinstance(x, str) and x for x in v):
        raise ConfigError(f"{key}: expected a list of strings, got {v!r}")
    return tuple(v)


def number(lo: float, hi: float, kind: type = float) -> Callable[[str, Any], Any]:
    def check(key: str, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float) or (kind is int and isinstance(v, float)):
            raise ConfigError(f"{key}: expected a number, got {v!r}")
        if not lo <= v <= hi:
            raise ConfigError(f"{key}: {v} is outside {lo}..{hi}")
        return kind(v)

    return check


def boolean(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{key}: expected true or false, got {v!r}")
    return v


def listen(key: str, v: Any) -> str:
    from z2z.adapters.dns import parse_listen

    v = text(key, v)
    try:
        parse_listen(v)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    return v


def domain(key: str, v: Any) -> str:
    v = text(key, v).strip()
    labels = v.rstrip(".").split(".")
    if not all(re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", lbl) for lbl in labels):
        raise ConfigError(f"{key}: {v!r} is not a DNS domain name")
    return v.rstrip(".") + "."


def prefixes(key: str, v: Any) -> tuple[str, ...]:
    """IP prefixes (``10.88.2.0/24``, ``2001:db8::/64``), normalised, duplicates dropped."""
    try:
        return tuple(dict.fromkeys(str(ipaddress.ip_network(p.strip(), strict=False)) for p in texts(key, v)))
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def site_name(key: str, v: Any) -> str:
    v = text(key, v)
    if not valid_site(v):
        raise ConfigError(f"{key}: {v!r} is not a valid site name (letters, digits, . _ -; ≤ 63)")
    return v


def types(key: str, v: Any) -> tuple[str, ...]:
    """Service types; ``"*"`` (every type seen on the link) where `key` allows it."""
    try:
        return tuple(
            dict.fromkeys(
                t.strip() if t.strip() == WILDCARD and key != "deny-types" else normalize_type(t)
                for t in texts(key, v)
            )
        )
    except RecordError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def subtypes(key: str, v: Any) -> tuple[str, ...]:
    """Subtype names, ``_universal._sub._ipp._tcp``; kept as ``<label>._sub.<bare type>``."""
    out: list[str] = []
    for name in texts(key, v):
        try:
            label, service_type = parse_subtype(name)
        except RecordError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        out.append(f"{label}._sub.{service_type}")
    return tuple(dict.fromkeys(out))


def patterns(key: str, v: Any) -> tuple[str, ...]:
    """Shell-style globs (``*``, ``?``, ``[...]``), matched case-insensitively."""
    out = texts(key, v)
    for p in out:
        if p.count("[") != p.count("]"):
            raise ConfigError(f"{key}: unbalanced brackets in pattern {p!r}")
    return out


def http_listen(key: str, v: Any) -> str:
    """``ADDR:PORT``, ``[v6]:PORT``, or a bare port bound to 127.0.0.1 (read-only but private)."""
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    v = text(key, v).strip()
    if v.isdigit():
        v = f"127.0.0.1:{v}"
    return listen(key, v)


def relay_listen(key: str, v: Any) -> str:
    """``ADDR:PORT``, ``[v6]:PORT``, or a bare port on every IPv4 address (the relay is for other sites)."""
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    v = text(key, v).strip()
    if v.isdigit():
        v = f"0.0.0.0:{v}"
    return listen(key, v)


def endpoint(key: str, v: Any) -> str:
    """``HOST:PORT`` or ``[v6]:PORT`` that other sites connect to (a relay endpoint)."""
    from z2z.core.relay.protocol import valid_endpoint

    v = text(key, v).strip()
    if not valid_endpoint(v):
        raise ConfigError(f"{key}: expected HOST:PORT or [IPv6]:PORT, got {v!r}")
    return v


def rendezvous_url(key: str, v: Any) -> str:
    from z2z.adapters.rendezvous import open_rendezvous  # the one parser of rendezvous URLs

    v = text(key, v)
    try:
        open_rendezvous(v)  # builds, does not connect
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    return v


def template(*names: str) -> Callable[[str, Any], str]:
    def check(key: str, v: Any) -> str:
        v = text(key, v)
        try:
            # Only the plain names: "{host.real}" once escaped as an AttributeError (found by
            # the property tests), and "{site.__class__}" has no business in a host name.
            fields_ = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
            if any(f not in names for f in fields_):
                raise KeyError(", ".join(f for f in fields_ if f not in names))
            v.format(**{n: "x" for n in names})
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            raise ConfigError(f"{key}: bad template {v!r} ({exc}); may use {names}") from None
        if "{site}" not in v:
            raise ConfigError(f"{key}: template {v!r} must contain {{site}}")
        return v

    return check


def log_level(key: str, v: Any) -> str:
    v = text(key, v).lower()
    if v not in LOG_LEVELS:
        raise ConfigError(f"{key}: {v!r} is not one of {', '.join(LOG_LEVELS)}")
    return v


def site_table(key: str, v: Any) -> dict[str, list[str]]:
    """A TOML table {site = value(s)} or flags ``SITE=VALUE[,VALUE]`` as {site: [values]}."""
    out: dict[str, list[str]] = {}
    if isinstance(v, dict):
        for site, value in v.items():
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list | tuple) or not all(isinstance(x, str) for x in values):
                raise ConfigError(f"{key}: {site}: expected a string or a list of strings, got {value!r}")
            out[str(site)] = list(values)
    else:
        for item in texts(key, v):
            site, sep, value = item.partition("=")
            if not sep or not value.strip():
                raise ConfigError(f"{key}: expected SITE=VALUE, got {item!r}")
            out.setdefault(site.strip(), []).extend(x.strip() for x in value.split(","))
    for site in out:
        if site != "*" and not valid_site(site):
            raise ConfigError(f"{key}: {site!r} is not a valid site name")
    return out


def trusted_sites(key: str, v: Any) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for site, values in site_table(key, v).items():
        if site == "*" or not values:
            raise ConfigError(f"{key}: give one or more public keys for a named site, not {site!r}")
        try:
            out[site] = tuple(format_public_key(parse_public_key(x)) for x in values)
        except SecurityError as exc:
            raise ConfigError(f"{key}: {site}: {exc} (copy it from `z2z show-key` on that site)") from None
    return out


def site_allow(key: str, v: Any) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for site, values in site_table(key, v).items():
        try:
            out[site] = tuple(str(ipaddress.ip_network(p, strict=False)) for p in values)
        except ValueError as exc:
            raise ConfigError(f"{key}: {site}: {exc}") from None
    return out


def choice(*allowed: str) -> Callable[[str, Any], str]:
    def check(key: str, v: Any) -> str:
        v = text(key, v).lower()
        if v not in allowed:
            raise ConfigError(f"{key}: {v!r} is not one of {', '.join(allowed)}")
        return v

    return check
