"""Gateway configuration: defaults, the TOML file and command-line overrides.

The TOML file uses the long flag names as keys (``site``, ``interface``,
``rendezvous``, ``type``, ``network``, ``state-dir``, ...), so a flag and its key
can never drift apart: both are read through `FIELDS`.  Flags win over the file.
Every problem is a `ConfigError` naming the key (and the line, where tomllib
gives one), never a traceback.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from z2z.protocol import valid_site
from z2z.records import RecordError, host_label, normalize_type

DEFAULT_TYPES = ("_ipp._tcp", "_ipps._tcp", "_printer._tcp", "_pdl-datastream._tcp", "_daap._tcp")
PUBLIC_BOOTSTRAP = "bootstrap.jami.net:4222"
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A bad flag, key or value; the message is one line meant for the admin."""


def default_state_dir() -> str:
    if os.geteuid() == 0:
        return "/var/lib/z2z"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "z2z")


def default_site() -> str:
    return host_label(socket.gethostname())


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything `z2z run` needs; field names are the TOML keys with - for _."""

    site: str = field(default_factory=default_site)
    interface: tuple[str, ...] = ()
    rendezvous: str | None = None
    type: tuple[str, ...] = DEFAULT_TYPES
    network: str = "z2z"
    state_dir: str = field(default_factory=default_state_dir)
    ttl: int = 120
    refresh: float = 40.0
    anti_entropy: float = 30.0
    max_skew: float = 30.0
    instance_template: str = "{instance} ({site})"
    host_template: str = "{host}-{site}"
    log_level: str = "info"
    dns_listen: str | None = None
    dns_domain: str = "z2z.home.arpa."
    election: bool = True
    rank: int = 0
    dht_port: int = 4222


def _str(key: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{key}: expected a non-empty string, got {v!r}")
    return v


def _strs(key: str, v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list | tuple) or not all(isinstance(x, str) and x for x in v):
        raise ConfigError(f"{key}: expected a list of strings, got {v!r}")
    return tuple(v)


def _number(lo: float, hi: float, kind: type = float) -> Callable[[str, Any], Any]:
    def check(key: str, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float) or (kind is int and isinstance(v, float)):
            raise ConfigError(f"{key}: expected a number, got {v!r}")
        if not lo <= v <= hi:
            raise ConfigError(f"{key}: {v} is outside {lo}..{hi}")
        return kind(v)

    return check


def _bool(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{key}: expected true or false, got {v!r}")
    return v


def _listen(key: str, v: Any) -> str:
    from z2z.dns import parse_listen

    v = _str(key, v)
    try:
        parse_listen(v)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    return v


def _domain(key: str, v: Any) -> str:
    v = _str(key, v).strip()
    labels = v.rstrip(".").split(".")
    if not all(re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", lbl) for lbl in labels):
        raise ConfigError(f"{key}: {v!r} is not a DNS domain name")
    return v.rstrip(".") + "."


def _site(key: str, v: Any) -> str:
    v = _str(key, v)
    if not valid_site(v):
        raise ConfigError(f"{key}: {v!r} is not a valid site name (letters, digits, . _ -; ≤ 63)")
    return v


def _types(key: str, v: Any) -> tuple[str, ...]:
    try:
        return tuple(dict.fromkeys(normalize_type(t) for t in _strs(key, v)))
    except RecordError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _rendezvous(key: str, v: Any) -> str:
    from z2z.rendezvous import open_rendezvous  # the one parser of rendezvous URLs

    v = _str(key, v)
    try:
        open_rendezvous(v)  # builds, does not connect
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    return v


def _template(*names: str) -> Callable[[str, Any], str]:
    def check(key: str, v: Any) -> str:
        v = _str(key, v)
        try:
            v.format(**{n: "x" for n in names})
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"{key}: bad template {v!r} ({exc}); may use {names}") from None
        if "{site}" not in v:
            raise ConfigError(f"{key}: template {v!r} must contain {{site}}")
        return v

    return check


def _log_level(key: str, v: Any) -> str:
    v = _str(key, v).lower()
    if v not in LOG_LEVELS:
        raise ConfigError(f"{key}: {v!r} is not one of {', '.join(LOG_LEVELS)}")
    return v


# TOML key / flag name -> validator.  One table for both sources.
FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "site": _site,
    "interface": _strs,
    "rendezvous": _rendezvous,
    "type": _types,
    "network": _site,
    "state-dir": _str,
    "ttl": _number(10, 86400, int),
    "refresh": _number(1, 86400),
    "anti-entropy": _number(1, 86400),
    "max-skew": _number(0, 3600),
    "instance-template": _template("instance", "site"),
    "host-template": _template("host", "site"),
    "log-level": _log_level,
    "dns-listen": _listen,
    "dns-domain": _domain,
    "election": _bool,
    "rank": _number(-(2**31), 2**31 - 1, int),
    "dht-port": _number(1, 65535, int),
}
assert {f.name.replace("_", "-") for f in fields(GatewayConfig)} == set(FIELDS)


def load_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a TOML config file; return its settings keyed by flag name."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:  # the message carries "(at line N, column M)"
        raise ConfigError(f"config file {path}: {exc}") from None
    return check_settings(doc, source=str(path))


def check_settings(doc: Mapping[str, Any], source: str = "flags") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key not in FIELDS:
            raise ConfigError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(FIELDS))})")
        try:
            out[key] = FIELDS[key](key, value)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return out


def build(file_settings: Mapping[str, Any], flag_settings: Mapping[str, Any]) -> GatewayConfig:
    """Defaults, then the file, then the flags."""
    merged = {**file_settings, **flag_settings}
    cfg = replace(GatewayConfig(), **{k.replace("-", "_"): v for k, v in merged.items()})
    if cfg.refresh >= cfg.ttl:
        raise ConfigError(f"refresh ({cfg.refresh}s) must be shorter than ttl ({cfg.ttl}s)")
    if not cfg.type:
        raise ConfigError("type: at least one service type is needed")
    if not valid_site(cfg.site):
        raise ConfigError(f"site: {cfg.site!r} is not a valid site name; pass --site")
    return cfg
