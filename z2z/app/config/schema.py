"""Gateway configuration: one table of settings drives the dataclass, the file, flags, reload and docs.

Every setting is one field of `GatewayConfig`, declared with `setting(...)`:
its default, its check (z2z.app.config.checks), whether a SIGHUP applies it,
how its flag is spelled on the command line, and its one-line doc.  The TOML
file uses the long flag names as keys (``site``, ``interface``, ``rendezvous``,
``type``, ``network``, ``state-dir``, ...), so a flag and its key can never drift
apart; `FIELDS`, `RELOADABLE`, `FIELD_DOCS`, the `z2z run` flags (`add_flags`)
and docs/configuration.md (`render_reference`) are all derived from the fields.
Flags win over the file.  Every problem is a `ConfigError` naming the key (and
the line, where tomllib gives one), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from z2z.app.config import checks as c
from z2z.app.config.checks import ConfigError
from z2z.core.policy import Policy
from z2z.core.records import host_label
from z2z.core.security import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_IMPORTS,
    DEFAULT_MAX_SERVICES,
    DEFAULT_MAX_SITES,
    TRUST_MODES,
    ImportRules,
    SiteLimits,
    parse_prefixes,
)
from z2z.core.wire.envelope import valid_site

DEFAULT_CONFIG = "/etc/z2z/z2z.toml"  # read when it exists and no --config is given
DEFAULT_TYPES = ("_ipp._tcp", "_ipps._tcp", "_printer._tcp", "_pdl-datastream._tcp", "_daap._tcp")
# Subtypes clients browse for (sources in docs/protocol.md): AirPrint's _universal (iOS),
# IPP Everywhere's _print, CUPS's _cups, Bonjour Printing's _printer web pages.
DEFAULT_SUBTYPES = (
    "_universal._sub._ipp._tcp",
    "_universal._sub._ipps._tcp",
    "_print._sub._ipp._tcp",
    "_print._sub._ipps._tcp",
    "_cups._sub._ipp._tcp",
    "_cups._sub._ipps._tcp",
    "_printer._sub._http._tcp",
)
PUBLIC_BOOTSTRAP = "bootstrap.jami.net:4222"


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
class Setting:
    """How one setting is checked, reloaded, spelled as a flag and documented."""

    check: Callable[[str, Any], Any]
    doc: str
    reload: bool = False  # a SIGHUP applies it (else: logged as needing a restart)
    flag: str = "value"  # "value", "append" (repeatable), "extend" (a list, bare = empty), "bool" (--no-X)
    metavar: str | None = None
    argtype: type | None = None  # what argparse converts the flag's text to, before `check`


def setting(
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    check: Callable[[str, Any], Any],
    doc: str,
    reload: bool = False,
    flag: str = "value",
    metavar: str | None = None,
    argtype: type | None = None,
) -> Any:
    """A `GatewayConfig` field carrying its `Setting` (the one table of settings)."""
    spec = Setting(check, doc, reload, flag, metavar, argtype)
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata={"setting": spec})
    return field(default=default, metadata={"setting": spec})


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything `z2z run` needs; field names are the TOML keys with - for _."""

    site: str = setting(
        default_factory=default_site,
        check=c.site_name,
        doc=(
            "This site's name, carried in every value it exports (letters, digits, `.` `_` `-`). "
            "Default: the host name."
        ),
    )
    interface: tuple[str, ...] = setting(
        default=(),
        check=c.texts,
        flag="append",
        metavar="NAME|ADDRESS",
        doc=(
            "Links to bridge, by name (`eth0`) or address; repeatable. Default: every non-loopback interface."
        ),
    )
    rendezvous: str | None = setting(
        default=None,
        check=c.rendezvous_url,
        metavar="URL",
        doc=(
            "`http://HOST:PORT` = an OpenDHT node's REST proxy; `opendht://HOST:PORT[,HOST:PORT…]` = "
            "an embedded OpenDHT node bootstrapping there. Default: embedded node on the public "
            "OpenDHT network."
        ),
    )
    type: tuple[str, ...] = setting(
        default=DEFAULT_TYPES,
        check=c.types,
        reload=True,
        flag="append",
        metavar="SERVICE-TYPE",
        doc=(
            "Service types bridged both ways (export and import) unless `export-types` / "
            '`import-types` say otherwise; `"*"` = every type seen on the link.'
        ),
    )
    subtypes: tuple[str, ...] = setting(
        default=DEFAULT_SUBTYPES,
        check=c.subtypes,
        reload=True,
        flag="append",
        metavar="SUB._sub.TYPE",
        doc=(
            "DNS-SD subtypes (`<label>._sub.<type>`) browsed on the link, so that each instance's "
            "subtypes are learned, carried and re-announced with it (mDNS cannot list an instance's "
            "subtypes; subtypes the link announces unasked are learned too with the zeroconf "
            "backend); `[]` = none. A reload browses the new list at once; known instances gain "
            "newly browsed subtypes as the link answers."
        ),
    )
    network: str = setting(
        default="z2z",
        check=c.site_name,
        doc=(
            "Deployment name: gateways only bridge within their network (separates deployments "
            "sharing a DHT)."
        ),
    )
    state_dir: str = setting(
        default_factory=default_state_dir,
        check=c.text,
        metavar="DIR",
        doc=(
            "Node identity, sequence numbers and status.json. Default: systemd's `$STATE_DIRECTORY`, "
            "else `/var/lib/z2z` as root, else `~/.local/state/z2z`."
        ),
    )
    ttl: int = setting(
        default=1500,
        check=c.number(10, 86400, int),
        reload=True,
        metavar="SECONDS",
        argtype=int,
        doc=(
            "Seconds importers keep a service without news from its site (so also how long a crashed "
            "site's services stay visible elsewhere). A version is re-put unchanged while it has at "
            "least two `refresh` periods left, so `ttl` ≥ 3 × `refresh` keeps versions few "
            "(docs/protocol.md)."
        ),
    )
    refresh: float = setting(
        default=500.0,
        check=c.number(1, 86400),
        reload=True,
        metavar="SECONDS",
        argtype=float,
        doc=(
            "Seconds between re-puts of each export (must be below `ttl`; keep it below OpenDHT's "
            "600-second value lifetime, or values drop out of the DHT between re-puts). When only "
            "`ttl` is set, below 1,500, the default is `ttl` / 3."
        ),
    )
    anti_entropy: float = setting(
        default=30.0,
        check=c.number(1, 86400),
        reload=True,
        metavar="SECONDS",
        argtype=float,
        doc="Seconds between full `get`s that repair missed pushes.",
    )
    announce_rate: float = setting(
        default=100.0,
        check=c.number(0, 100000),
        reload=True,
        metavar="PER_SECOND",
        argtype=float,
        doc=(
            "Proxies published (or updated) on the link per second after a first burst of as many; "
            "more wait their turn. A site that brings 3,000 services at once would otherwise send "
            "~9,000 announcements within two seconds, more than other hosts' mDNS daemons receive "
            "(docs/reliability.md). 0: no pacing."
        ),
    )
    max_skew: float = setting(
        default=30.0,
        check=c.number(0, 3600),
        reload=True,
        metavar="SECONDS",
        argtype=float,
        doc="Seconds of clock difference tolerated between sites.",
    )
    flap_half_life: float = setting(
        default=10.0,
        check=c.number(0, 3600),
        reload=True,
        metavar="SECONDS",
        argtype=float,
        doc=(
            "Flap damping: a local service that changes (or comes and goes) more than 4 times within "
            "about this many seconds is held at its last exported state until it settles (at most 3 "
            "half-lives); `0` exports every change at once."
        ),
    )
    instance_template: str = setting(
        default="{instance} ({site})",
        check=c.template("instance", "site"),
        reload=True,
        metavar="TEMPLATE",
        doc=(
            "Name of an import whose instance name is taken on this link; must contain `{site}`, may "
            "contain `{instance}`."
        ),
    )
    host_template: str = setting(
        default="{host}-{site}",
        check=c.template("host", "site"),
        reload=True,
        metavar="TEMPLATE",
        doc=(
            "Host name of proxied services (`-z2z` is appended); must contain `{site}`, may contain `{host}`."
        ),
    )
    log_level: str = setting(
        default="info",
        check=c.log_level,
        reload=True,
        metavar="debug|info|warning|error",
        doc="`debug`, `info`, `warning` or `error`.",
    )
    mdns: str = setting(
        default="auto",
        check=c.choice("auto", "avahi", "zeroconf"),
        metavar="auto|avahi|zeroconf",
        doc=(
            "Link backend: `avahi` (D-Bus, beside avahi-daemon), `zeroconf` (python-zeroconf), or "
            "`auto` (Avahi when it runs on the system bus for this network namespace)."
        ),
    )
    dns_listen: str | None = setting(
        default=None,
        check=c.listen,
        metavar="ADDR:PORT",
        doc="Also serve bridged services as unicast DNS-SD on `ADDR:PORT` (UDP and TCP).",
    )
    dns_domain: str = setting(
        default="z2z.home.arpa.",
        check=c.domain,
        metavar="DOMAIN",
        doc="The DNS-SD domain served with `dns-listen`.",
    )
    dns_prefixes: tuple[str, ...] = setting(  # () = the prefixes of `interface` (z2z.adapters.dns.prefixes)
        default=(),
        check=c.prefixes,
        flag="append",
        metavar="PREFIX",
        doc=(
            "Subnets whose clients find `dns-domain` by themselves (RFC 6763 §11: `b`/`db`/`lb` "
            "`._dns-sd._udp` PTRs under each prefix's reverse-mapping domain). Default: the prefixes of "
            "`interface` (link-local and loopback left out)."
        ),
    )
    dns_local: bool = setting(
        default=False,
        check=c.boolean,
        flag="bool",
        doc=(
            "Also serve this link's own services (of the bridged types) with `dns-listen` "
            "(RFC 8766 discovery proxy), not only the imported ones."
        ),
    )
    election: bool = setting(
        default=True,
        check=c.boolean,
        flag="bool",
        doc=(
            "Elect one bridging leader per link and build the leaders' DHT (`--no-election`: bridge "
            "at once through the rendezvous)."
        ),
    )
    rank: int = setting(
        default=0,
        check=c.number(-(2**31), 2**31 - 1, int),
        metavar="N",
        argtype=int,
        doc="Leader preference within an island; higher wins.",
    )
    dht_port: int = setting(
        default=4222,
        check=c.number(1, 65535, int),
        metavar="PORT",
        argtype=int,
        doc="UDP port of the leaders' embedded OpenDHT node.",
    )
    # filters (z2z.core.policy); None = the same as `type`
    export_types: tuple[str, ...] | None = setting(
        default=None,
        check=c.types,
        reload=True,
        flag="extend",
        metavar="TYPE",
        doc=(
            'Service types exported from this link; `"*"` = every type seen on it; `[]` = export '
            "nothing (import-only gateway). Default: `type`."
        ),
    )
    import_types: tuple[str, ...] | None = setting(
        default=None,
        check=c.types,
        reload=True,
        flag="extend",
        metavar="TYPE",
        doc=(
            'Service types imported onto this link; `"*"` = every type other sites export (learned '
            "from the DHT's type index) or this link shows; `[]` = import nothing (export-only "
            "gateway). Default: `type`."
        ),
    )
    deny_types: tuple[str, ...] = setting(
        default=(),
        check=c.types,
        reload=True,
        flag="append",
        metavar="TYPE",
        doc='Service types never bridged either way, even under `"*"`.',
    )
    export_allow: tuple[str, ...] = setting(
        default=(),
        check=c.patterns,
        reload=True,
        flag="append",
        metavar="GLOB",
        doc='Only export instances whose name matches one of these globs (e.g. `"Floor 2 *"`). Default: all.',
    )
    export_deny: tuple[str, ...] = setting(
        default=(),
        check=c.patterns,
        reload=True,
        flag="append",
        metavar="GLOB",
        doc="Never export instances whose name matches one of these globs.",
    )
    import_allow: tuple[str, ...] = setting(
        default=(),
        check=c.patterns,
        reload=True,
        flag="append",
        metavar="GLOB",
        doc="Only import instances whose name matches one of these globs. Default: all.",
    )
    import_deny: tuple[str, ...] = setting(
        default=(),
        check=c.patterns,
        reload=True,
        flag="append",
        metavar="GLOB",
        doc="Never import instances whose name matches one of these globs.",
    )
    import_from: tuple[str, ...] = setting(
        default=(),
        check=c.patterns,
        reload=True,
        flag="append",
        metavar="SITE",
        doc="Only import from these sites (globs). Default: every site.",
    )
    import_never_from: tuple[str, ...] = setting(
        default=(),
        check=c.patterns,
        reload=True,
        flag="append",
        metavar="SITE",
        doc="Never import from these sites (globs).",
    )
    metrics_listen: str | None = setting(
        default=None,
        check=c.http_listen,
        metavar="[ADDR:]PORT",
        doc="Serve Prometheus metrics on `ADDR:PORT` (`/metrics`); a bare port binds 127.0.0.1.",
    )
    http_listen: str | None = setting(
        default=None,
        check=c.http_listen,
        metavar="[ADDR:]PORT",
        doc=(
            "Serve the read-only status page (`/`) and `/status.json` on `ADDR:PORT`; a bare port "
            "binds 127.0.0.1."
        ),
    )
    # private networks, trust, address policy and quotas (z2z.core.security, docs/security.md)
    network_secret: str | None = setting(
        default=None,
        check=c.text,
        metavar="FILE",
        doc=(
            "File holding the network secret: DHT keys derived with HMAC, every value sealed and "
            "signed. Default: systemd's `$CREDENTIALS_DIRECTORY/network.secret` when present, else "
            "`network.secret` in `state-dir`, made on first start (`z2z invite` / `z2z join CODE` "
            "share it). See docs/security.md."
        ),
    )
    public: bool = setting(  # the open mode, only when asked for (z2z.app.membership)
        default=False,
        check=c.boolean,
        flag="bool",
        doc=(
            "The open mode: no secret, DHT keys anyone can compute, values unsealed and unsigned, so "
            "anyone on the DHT can read this network's services and inject new ones. Off by default."
        ),
    )
    site_key: str | None = setting(
        default=None,
        check=c.text,
        metavar="FILE",
        doc=(
            "This site's Ed25519 signing key (made on first use). Gateways of one site share it. "
            "Default: `site.key` in `state-dir`."
        ),
    )
    trust: str = setting(
        default="tofu",
        check=c.choice(*TRUST_MODES),
        metavar="tofu|explicit",
        doc=(
            "Which site keys to accept in a private network: `tofu` (trust on first use, then only "
            "that key) or `explicit` (only `trusted-sites`)."
        ),
    )
    trusted_sites: dict[str, tuple[str, ...]] = setting(
        default_factory=dict,
        check=c.trusted_sites,
        flag="append",
        metavar="SITE=KEY",
        doc=(
            'Pinned site keys, `{ campus-a = "<base64>" }` or a list per site (flag: `SITE=KEY`, '
            "repeatable); a key is what `z2z show-key` prints on that site."
        ),
    )
    site_allow: dict[str, tuple[str, ...]] = setting(
        default_factory=dict,
        check=c.site_allow,
        flag="append",
        metavar="SITE=PREFIX[,PREFIX]",
        doc=(
            'Prefixes each site may announce, `{ campus-a = ["10.1.0.0/16"], "*" = [...] }` (flag: '
            "`SITE=PREFIX[,PREFIX]`); other sites: any routable address but this gateway's own."
        ),
    )
    max_services_per_site: int = setting(
        default=DEFAULT_MAX_SERVICES,
        check=c.number(1, 1_000_000, int),
        metavar="N",
        argtype=int,
        doc=(
            "Most services (and tombstones) held from one site; more are refused, and the site is "
            "shown over its quota (`z2z status`, status.json `over_quota`, the metric "
            "`z2z_site_over_quota`, one log line). Also caps the services tracked on this link (a "
            "device announcing thousands of names cannot exhaust memory). The default fits a campus "
            "exporting 1,000 services twice over."
        ),
    )
    max_bytes_per_site: int = setting(
        default=DEFAULT_MAX_BYTES,
        check=c.number(1024, 1 << 30, int),
        metavar="N",
        argtype=int,
        doc="Most bytes of values held from one site (about 2 KiB a service); more are refused, as above.",
    )
    max_sites: int = setting(
        default=DEFAULT_MAX_SITES,
        check=c.number(1, 1_000_000, int),
        metavar="N",
        argtype=int,
        doc="Most sites imported from at once.",
    )
    # the relay through the gateways (z2z.app.relay, docs/relay.md)
    relay: str = setting(
        default="auto",
        check=c.choice("auto", "always", "never"),
        metavar="auto|always|never",
        doc=(
            "Carry imported TCP services through the gateways: `auto` relays a service whose addresses "
            "overlap a local prefix, that a TCP probe cannot reach, or whose site says it is not "
            "`reachable`; `always` relays every one; `never` publishes the sites' own addresses. "
            "Private networks only."
        ),
    )
    relay_listen: str = setting(
        default="0.0.0.0:4224",
        check=c.relay_listen,
        metavar="[ADDR:]PORT",
        doc=(
            "Where this gateway's relay endpoint listens (TCP, TLS 1.3); a bare port binds every "
            "IPv4 address."
        ),
    )
    relay_advertise: str | None = setting(
        default=None,
        check=c.endpoint,
        metavar="ADDR:PORT",
        doc=(
            "How other sites reach this relay endpoint (a forwarded port on the NAT router). "
            "Default: this gateway's link address and the `relay-listen` port."
        ),
    )
    reachable: bool = setting(
        default=True,
        check=c.boolean,
        flag="bool",
        doc=(
            "This site's service addresses are reachable from other sites; set false behind NAT "
            "so that importers relay."
        ),
    )
    relay_max_streams: int = setting(
        default=64,
        check=c.number(1, 100_000, int),
        metavar="N",
        argtype=int,
        doc="Most relayed streams open at once to or from one site.",
    )
    relay_idle: float = setting(
        default=300.0,
        check=c.number(1, 86400),
        metavar="SECONDS",
        argtype=float,
        doc="A relayed stream with no byte either way for this long is closed.",
    )
    max_imported_services: int = setting(
        default=DEFAULT_MAX_IMPORTS,
        check=c.number(1, 10_000_000, int),
        metavar="N",
        argtype=int,
        doc=(
            "Most services (and tombstones) imported from all sites together: the bound on this "
            "gateway's memory and on the proxies it publishes. The default fits 5,000 services from "
            "20 sites twice over."
        ),
    )

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
        return ImportRules(own_addresses, sites, default, self.max_sites, self.max_imported_services)


SETTINGS: dict[str, Setting] = {
    f.name.replace("_", "-"): f.metadata["setting"] for f in fields(GatewayConfig)
}
# TOML key / flag name -> check.  One table for both sources.
FIELDS: dict[str, Callable[[str, Any], Any]] = {key: s.check for key, s in SETTINGS.items()}
# Keys a SIGHUP applies to the running gateway; every other key needs a restart.
RELOADABLE = frozenset(key for key, s in SETTINGS.items() if s.reload)
FIELD_DOCS: dict[str, str] = {key: s.doc for key, s in SETTINGS.items()}


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One `--KEY` flag per setting, for `z2z run`; an absent flag is None (the file or default holds)."""
    for key, s in SETTINGS.items():
        helptext = s.doc.replace("%", "%%") + (" Repeatable." if s.flag == "append" else "")
        if s.flag == "bool":
            parser.add_argument(
                f"--{key}", action=argparse.BooleanOptionalAction, default=None, help=helptext
            )
        elif s.flag == "extend":  # a bare --export-types is an empty list
            parser.add_argument(f"--{key}", nargs="*", action="extend", metavar=s.metavar, help=helptext)
        elif s.flag == "append":
            parser.add_argument(f"--{key}", action="append", metavar=s.metavar, help=helptext)
        else:
            parser.add_argument(f"--{key}", type=s.argtype or str, metavar=s.metavar, help=helptext)


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
    if "refresh" not in merged and cfg.refresh * 3 > cfg.ttl:  # a short ttl brings its refresh along
        cfg = replace(cfg, refresh=max(1.0, cfg.ttl / 3))
    if cfg.refresh >= cfg.ttl:
        raise ConfigError(f"refresh ({cfg.refresh}s) must be shorter than ttl ({cfg.ttl}s)")
    policy = cfg.policy()
    if not policy.export_types and not policy.import_types:
        raise ConfigError("type: at least one service type is needed (in export-types or import-types)")
    if not valid_site(cfg.site):
        raise ConfigError(f"site: {cfg.site!r} is not a valid site name; pass --site")
    if cfg.public and cfg.network_secret is not None:
        raise ConfigError("public, network-secret: a network is either public or private, not both")
    if cfg.public and (cfg.trust == "explicit" or cfg.trusted_sites):
        raise ConfigError("trust, trusted-sites: values are only signed in a private network; drop public")
    if cfg.trust == "explicit" and not cfg.trusted_sites:
        raise ConfigError("trust = explicit imports nothing without trusted-sites")
    return cfg


def reload_diff(running: GatewayConfig, new: GatewayConfig) -> tuple[GatewayConfig, list[str], list[str]]:
    """What a SIGHUP applies: (the config to run with, keys changed, keys that need a restart).

    Keys outside `RELOADABLE` keep their running values in the returned config.
    """
    restart: list[str] = []
    fixed: dict[str, Any] = {}
    for key in FIELDS:
        name = key.replace("-", "_")
        if key not in RELOADABLE:
            if getattr(new, name) != getattr(running, name):
                restart.append(key)
            fixed[name] = getattr(running, name)
    applied = replace(new, **fixed)
    changed = sorted(
        k for k in FIELDS if getattr(applied, k.replace("-", "_")) != getattr(running, k.replace("-", "_"))
    )
    return applied, changed, restart
