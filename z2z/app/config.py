"""Gateway configuration: defaults, the TOML file and command-line overrides.

The TOML file uses the long flag names as keys (``site``, ``interface``,
``rendezvous``, ``type``, ``network``, ``state-dir``, ...), so a flag and its key
can never drift apart: both are read through `FIELDS`.  Flags win over the file.
Every problem is a `ConfigError` naming the key (and the line, where tomllib
gives one), never a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import string
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from z2z.core.errors import Z2zError
from z2z.core.policy import WILDCARD, Policy
from z2z.core.records import RecordError, host_label, normalize_type
from z2z.core.security import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SERVICES,
    DEFAULT_MAX_SITES,
    TRUST_MODES,
    ImportRules,
    SecurityError,
    SiteLimits,
    format_public_key,
    parse_prefixes,
    parse_public_key,
)
from z2z.core.wire.envelope import valid_site

DEFAULT_CONFIG = "/etc/z2z/z2z.toml"  # read when it exists and no --config is given
DEFAULT_TYPES = ("_ipp._tcp", "_ipps._tcp", "_printer._tcp", "_pdl-datastream._tcp", "_daap._tcp")
PUBLIC_BOOTSTRAP = "bootstrap.jami.net:4222"
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Z2zError, ValueError):
    """A bad flag, key or value; the message is one line meant for the admin."""

    default_reason = "config"


def default_state_dir() -> str:
    # Under systemd (StateDirectory=z2z) the service user is not root and has no home.
    if os.environ.get("STATE_DIRECTORY"):
        return os.environ["STATE_DIRECTORY"].split(":")[0]
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
    flap_half_life: float = 10.0
    instance_template: str = "{instance} ({site})"
    host_template: str = "{host}-{site}"
    log_level: str = "info"
    mdns: str = "auto"
    dns_listen: str | None = None
    dns_domain: str = "z2z.home.arpa."
    dns_prefixes: tuple[str, ...] = ()  # () = the prefixes of `interface` (z2z.adapters.dns.prefixes)
    dns_local: bool = False
    election: bool = True
    rank: int = 0
    dht_port: int = 4222
    # filters (z2z.core.policy); None = the same as `type`
    export_types: tuple[str, ...] | None = None
    import_types: tuple[str, ...] | None = None
    deny_types: tuple[str, ...] = ()
    export_allow: tuple[str, ...] = ()
    export_deny: tuple[str, ...] = ()
    import_allow: tuple[str, ...] = ()
    import_deny: tuple[str, ...] = ()
    import_from: tuple[str, ...] = ()
    import_never_from: tuple[str, ...] = ()
    metrics_listen: str | None = None
    http_listen: str | None = None
    # private networks, trust, address policy and quotas (z2z.core.security, docs/security.md)
    network_secret: str | None = None
    site_key: str | None = None
    trust: str = "tofu"
    trusted_sites: dict[str, tuple[str, ...]] = field(default_factory=dict)
    site_allow: dict[str, tuple[str, ...]] = field(default_factory=dict)
    max_services_per_site: int = DEFAULT_MAX_SERVICES
    max_bytes_per_site: int = DEFAULT_MAX_BYTES
    max_sites: int = DEFAULT_MAX_SITES

    def policy(self) -> Policy:
        """The filters as the bridge applies them."""
        return Policy.make(
            self.type if self.export_types is None else self.export_types,
            self.type if self.import_types is None else self.import_types,
            deny_types=self.deny_types,
            export_allow=self.export_allow,
            export_deny=self.export_deny,
            import_allow=self.import_allow,
            import_deny=self.import_deny,
            import_from=self.import_from,
            import_never_from=self.import_never_from,
        )

    def import_rules(self, own_addresses: frozenset[str] = frozenset()) -> ImportRules:
        """The address policy and quotas as the bridge applies them (z2z.core.security)."""
        default = SiteLimits(None, self.max_services_per_site, self.max_bytes_per_site)
        sites = {
            site: replace(default, allow=parse_prefixes(prefixes))
            for site, prefixes in self.site_allow.items()
        }
        return ImportRules(own_addresses, sites, default, self.max_sites)


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
    from z2z.adapters.dns import parse_listen

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


def _prefixes(key: str, v: Any) -> tuple[str, ...]:
    try:
        return tuple(dict.fromkeys(str(ipaddress.ip_network(p.strip(), strict=False)) for p in _strs(key, v)))
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _site(key: str, v: Any) -> str:
    v = _str(key, v)
    if not valid_site(v):
        raise ConfigError(f"{key}: {v!r} is not a valid site name (letters, digits, . _ -; ≤ 63)")
    return v


def _types(key: str, v: Any) -> tuple[str, ...]:
    """Service types; ``"*"`` (every type seen on the link) where `key` allows it."""
    try:
        return tuple(
            dict.fromkeys(
                t.strip() if t.strip() == WILDCARD and key != "deny-types" else normalize_type(t)
                for t in _strs(key, v)
            )
        )
    except RecordError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _patterns(key: str, v: Any) -> tuple[str, ...]:
    """Shell-style globs (``*``, ``?``, ``[...]``), matched case-insensitively."""
    out = _strs(key, v)
    for p in out:
        if p.count("[") != p.count("]"):
            raise ConfigError(f"{key}: unbalanced brackets in pattern {p!r}")
    return out


def _http_listen(key: str, v: Any) -> str:
    """``ADDR:PORT``, ``[v6]:PORT``, or a bare port bound to 127.0.0.1 (read-only but private)."""
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    v = _str(key, v).strip()
    if v.isdigit():
        v = f"127.0.0.1:{v}"
    return _listen(key, v)


def _rendezvous(key: str, v: Any) -> str:
    from z2z.adapters.rendezvous import open_rendezvous  # the one parser of rendezvous URLs

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


def _log_level(key: str, v: Any) -> str:
    v = _str(key, v).lower()
    if v not in LOG_LEVELS:
        raise ConfigError(f"{key}: {v!r} is not one of {', '.join(LOG_LEVELS)}")
    return v


def _site_table(key: str, v: Any) -> dict[str, list[str]]:
    """A TOML table {site = value(s)} or flags ``SITE=VALUE[,VALUE]`` as {site: [values]}."""
    out: dict[str, list[str]] = {}
    if isinstance(v, dict):
        for site, value in v.items():
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list | tuple) or not all(isinstance(x, str) for x in values):
                raise ConfigError(f"{key}: {site}: expected a string or a list of strings, got {value!r}")
            out[str(site)] = list(values)
    else:
        for item in _strs(key, v):
            site, sep, value = item.partition("=")
            if not sep or not value.strip():
                raise ConfigError(f"{key}: expected SITE=VALUE, got {item!r}")
            out.setdefault(site.strip(), []).extend(x.strip() for x in value.split(","))
    for site in out:
        if site != "*" and not valid_site(site):
            raise ConfigError(f"{key}: {site!r} is not a valid site name")
    return out


def _trusted_sites(key: str, v: Any) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for site, values in _site_table(key, v).items():
        if site == "*" or not values:
            raise ConfigError(f"{key}: give one or more public keys for a named site, not {site!r}")
        try:
            out[site] = tuple(format_public_key(parse_public_key(x)) for x in values)
        except SecurityError as exc:
            raise ConfigError(f"{key}: {site}: {exc} (copy it from `z2z show-key` on that site)") from None
    return out


def _site_allow(key: str, v: Any) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for site, values in _site_table(key, v).items():
        try:
            out[site] = tuple(str(ipaddress.ip_network(p, strict=False)) for p in values)
        except ValueError as exc:
            raise ConfigError(f"{key}: {site}: {exc}") from None
    return out


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    def check(key: str, v: Any) -> str:
        v = _str(key, v).lower()
        if v not in allowed:
            raise ConfigError(f"{key}: {v!r} is not one of {', '.join(allowed)}")
        return v

    return check


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
    "flap-half-life": _number(0, 3600),
    "instance-template": _template("instance", "site"),
    "host-template": _template("host", "site"),
    "log-level": _log_level,
    "mdns": _choice("auto", "avahi", "zeroconf"),
    "dns-listen": _listen,
    "dns-domain": _domain,
    "dns-prefixes": _prefixes,
    "dns-local": _bool,
    "election": _bool,
    "rank": _number(-(2**31), 2**31 - 1, int),
    "dht-port": _number(1, 65535, int),
    "export-types": _types,
    "import-types": _types,
    "deny-types": _types,
    "export-allow": _patterns,
    "export-deny": _patterns,
    "import-allow": _patterns,
    "import-deny": _patterns,
    "import-from": _patterns,
    "import-never-from": _patterns,
    "metrics-listen": _http_listen,
    "http-listen": _http_listen,
    "network-secret": _str,
    "site-key": _str,
    "trust": _choice(*TRUST_MODES),
    "trusted-sites": _trusted_sites,
    "site-allow": _site_allow,
    "max-services-per-site": _number(1, 1_000_000, int),
    "max-bytes-per-site": _number(1024, 1 << 30, int),
    "max-sites": _number(1, 1_000_000, int),
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
    except RecursionError:  # a = [[[[… (found by fuzzing)
        raise ConfigError(f"config file {path}: values nested too deeply") from None
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
    policy = cfg.policy()
    if not policy.export_types and not policy.import_types:
        raise ConfigError("type: at least one service type is needed (in export-types or import-types)")
    if not valid_site(cfg.site):
        raise ConfigError(f"site: {cfg.site!r} is not a valid site name; pass --site")
    if cfg.network_secret is None and (cfg.trust == "explicit" or cfg.trusted_sites):
        raise ConfigError(
            "trust, trusted-sites: values are only signed in a private network; "
            "give network-secret (make one with z2z keygen)"
        )
    if cfg.trust == "explicit" and not cfg.trusted_sites:
        raise ConfigError("trust = explicit imports nothing without trusted-sites")
    return cfg


# ---------------------------------------------------------------------------
# the reference: one line per key, checked against FIELDS (tests/unit/app/test_config.py)
# and rendered into docs/configuration.md, so neither can drift from the code.

# Keys a SIGHUP applies to the running gateway; every other key needs a restart.
RELOADABLE = frozenset(
    {
        "type",
        "export-types",
        "import-types",
        "deny-types",
        "export-allow",
        "export-deny",
        "import-allow",
        "import-deny",
        "import-from",
        "import-never-from",
        "instance-template",
        "host-template",
        "log-level",
        "ttl",
        "refresh",
        "anti-entropy",
        "max-skew",
        "flap-half-life",
    }
)

FIELD_DOCS: dict[str, str] = {
    "site": "This site's name, carried in every value it exports (letters, digits, `.` `_` `-`). "
    "Default: the host name.",
    "interface": "Links to bridge, by name (`eth0`) or address; repeatable. Default: every non-loopback "
    "interface.",
    "rendezvous": "`http://HOST:PORT` = an OpenDHT node's REST proxy; `opendht://HOST:PORT[,HOST:PORT…]` = "
    "an embedded OpenDHT node bootstrapping there. Default: embedded node on the public "
    "OpenDHT network.",
    "type": "Service types bridged both ways (export and import) unless `export-types` / `import-types` "
    'say otherwise; `"*"` = every type seen on the link.',
    "network": "Deployment name: gateways only bridge within their network (separates deployments "
    "sharing a DHT).",
    "state-dir": "Node identity, sequence numbers and status.json. Default: systemd's `$STATE_DIRECTORY`, "
    "else `/var/lib/z2z` as root, else `~/.local/state/z2z`.",
    "ttl": "Seconds importers keep a service without news from its site.",
    "refresh": "Seconds between re-puts of each export (must be below `ttl`).",
    "anti-entropy": "Seconds between full `get`s that repair missed pushes.",
    "max-skew": "Seconds of clock difference tolerated between sites.",
    "flap-half-life": "Flap damping: a local service that changes (or comes and goes) more than 4 times "
    "within about this many seconds is held at its last exported state until it "
    "settles (at most 3 half-lives); `0` exports every change at once.",
    "instance-template": "Name of an import whose instance name is taken on this link; must contain "
    "`{site}`, may contain `{instance}`.",
    "host-template": "Host name of proxied services (`-z2z` is appended); must contain `{site}`, may "
    "contain `{host}`.",
    "log-level": "`debug`, `info`, `warning` or `error`.",
    "mdns": "Link backend: `avahi` (D-Bus, beside avahi-daemon), `zeroconf` (python-zeroconf), or `auto` "
    "(Avahi when it runs on the system bus for this network namespace).",
    "dns-listen": "Also serve bridged services as unicast DNS-SD on `ADDR:PORT` (UDP and TCP).",
    "dns-domain": "The DNS-SD domain served with `dns-listen`.",
    "dns-prefixes": "Subnets whose clients find `dns-domain` by themselves (RFC 6763 §11: `b`/`db`/`lb` "
    "`._dns-sd._udp` PTRs under each prefix's reverse-mapping domain). Default: the prefixes of "
    "`interface` (link-local and loopback left out).",
    "dns-local": "Also serve this link's own services (of the bridged types) with `dns-listen` "
    "(RFC 8766 discovery proxy), not only the imported ones.",
    "election": "Elect one bridging leader per link and build the leaders' DHT (`--no-election`: "
    "bridge at once through the rendezvous).",
    "rank": "Leader preference within an island; higher wins.",
    "dht-port": "UDP port of the leaders' embedded OpenDHT node.",
    "export-types": 'Service types exported from this link; `"*"` = every type seen on it; `[]` = export '
    "nothing (import-only gateway). Default: `type`.",
    "import-types": 'Service types imported onto this link; `"*"` = every type other sites export (learned '
    "from the DHT's type index) or this link shows; `[]` = import nothing (export-only "
    "gateway). Default: `type`.",
    "deny-types": 'Service types never bridged either way, even under `"*"`.',
    "export-allow": 'Only export instances whose name matches one of these globs (e.g. `"Floor 2 *"`). '
    "Default: all.",
    "export-deny": "Never export instances whose name matches one of these globs.",
    "import-allow": "Only import instances whose name matches one of these globs. Default: all.",
    "import-deny": "Never import instances whose name matches one of these globs.",
    "import-from": "Only import from these sites (globs). Default: every site.",
    "import-never-from": "Never import from these sites (globs).",
    "metrics-listen": "Serve Prometheus metrics on `ADDR:PORT` (`/metrics`); a bare port binds 127.0.0.1.",
    "http-listen": "Serve the read-only status page (`/`) and `/status.json` on `ADDR:PORT`; a bare port "
    "binds 127.0.0.1.",
    "network-secret": "File holding the network secret (`z2z keygen --out FILE`): DHT keys derived with "
    "HMAC, every value sealed and signed. Same file on every gateway of the network. "
    "See docs/security.md.",
    "site-key": "This site's Ed25519 signing key (made on first use). Gateways of one site share it. "
    "Default: `site.key` in `state-dir`.",
    "trust": "Which site keys to accept in a private network: `tofu` (trust on first use, then only "
    "that key) or `explicit` (only `trusted-sites`).",
    "trusted-sites": 'Pinned site keys, `{ campus-a = "<base64>" }` or a list per site (flag: `SITE=KEY`, '
    "repeatable); a key is what `z2z show-key` prints on that site.",
    "site-allow": 'Prefixes each site may announce, `{ campus-a = ["10.1.0.0/16"], "*" = [...] }` (flag: '
    "`SITE=PREFIX[,PREFIX]`); other sites: any routable address but this gateway's own.",
    "max-services-per-site": "Most services (and tombstones) held from one site; more are refused. "
    "Also caps the services tracked on this link (a device announcing "
    "thousands of names cannot exhaust memory).",
    "max-bytes-per-site": "Most bytes of values held from one site; more are refused.",
    "max-sites": "Most sites imported from at once.",
}
# tests/unit/app/test_config_admin.py checks that every key of FIELDS is documented here.


def _toml_value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def render_reference() -> str:
    """The key reference of docs/configuration.md, in Markdown (generated from FIELDS)."""
    defaults = GatewayConfig(site="(host name)", state_dir="/var/lib/z2z")
    rows = ["| key / flag | default | on SIGHUP | meaning |", "|---|---|---|---|"]
    for key in FIELDS:
        value = getattr(defaults, key.replace("-", "_"))
        default = {"site": "host name", "state-dir": "`/var/lib/z2z`"}.get(key) or _toml_value(value)
        if key in ("export-types", "import-types"):
            default = "`type`"
        reload = "applied" if key in RELOADABLE else "restart"
        rows.append(f"| `{key}` / `--{key}` | {default} | {reload} | {FIELD_DOCS.get(key, '')} |")
    return "\n".join(rows) + "\n"


def _key_lines(text: str) -> dict[str, int]:
    """Line numbers of top-level ``key = ...`` lines (tomllib gives lines only for syntax errors)."""
    lines: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            break  # a table: everything after it is not top-level
        m = re.match(r'^\s*("?)([A-Za-z0-9_-]+)\1\s*=', line)
        if m:
            lines.setdefault(m.group(2), n)
    return lines


def check_file(path: str | os.PathLike[str]) -> list[str]:
    """Every problem in config file `path`, one line each (``FILE:LINE: key: why``); [] when fine.

    Unlike `load_file`, it does not stop at the first bad key, and it also checks
    what `build` checks across keys (refresh below ttl, something to bridge).
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        text = raw.decode("utf-8")
        doc = tomllib.loads(text)
    except FileNotFoundError:
        return [f"{path}: config file does not exist"]
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{path}: {exc}"]
    except tomllib.TOMLDecodeError as exc:
        return [f"{path}: {exc}"]
    except RecursionError:
        return [f"{path}: values nested too deeply"]
    lines = _key_lines(text)
    problems: list[str] = []
    good: dict[str, Any] = {}
    for key, value in doc.items():
        where = f"{path}:{lines[key]}" if key in lines else str(path)
        if key not in FIELDS:
            kind = "table" if isinstance(value, dict) else "key"
            problems.append(f"{where}: unknown {kind} {key!r} (known keys: {', '.join(sorted(FIELDS))})")
            continue
        try:
            good[key] = FIELDS[key](key, value)
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
    if not problems:
        try:
            build(good, {})
        except ConfigError as exc:
            problems.append(f"{path}: {exc}")
    return problems
