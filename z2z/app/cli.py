"""The `z2z` command line.

Every error an admin can cause (a bad flag, an unknown interface, an unreachable
rendezvous, a bad config file) ends in one line on stderr and a non-zero exit
status; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from z2z import __version__
from z2z.app.config import (
    DEFAULT_CONFIG,
    FIELD_DOCS,
    FIELDS,
    ConfigError,
    GatewayConfig,
    build,
    check_file,
    check_settings,
    load_file,
)

EXIT_CONFIG = 2
EXIT_RENDEZVOUS = 3
EXIT_LINK = 4

log = logging.getLogger("z2z")


def _run_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run a gateway", description="Bridge DNS-SD services of this link.")
    p.add_argument(
        "--config",
        metavar="FILE",
        help=f"TOML file with the same keys as these flags ({DEFAULT_CONFIG} if it exists)",
    )
    p.add_argument("--site", help="this site's name (default: the host name)")
    p.add_argument(
        "--interface",
        action="append",
        metavar="NAME|ADDRESS",
        help="link to bridge (repeatable; default: all)",
    )
    p.add_argument(
        "--rendezvous",
        metavar="URL",
        help="http://HOST:PORT (OpenDHT proxy) or opendht://HOST:PORT[,HOST:PORT] "
        "(embedded node); default: embedded node on the public OpenDHT network",
    )
    p.add_argument(
        "--type",
        action="append",
        metavar="SERVICE-TYPE",
        help="service type to export and import, e.g. _ipp._tcp (repeatable)",
    )
    p.add_argument("--network", help="deployment name separating gateways sharing a DHT (default z2z)")
    p.add_argument("--state-dir", metavar="DIR", help="where node identity and sequence numbers live")
    p.add_argument("--ttl", type=int, help="seconds importers keep a service without news (default 120)")
    p.add_argument("--refresh", type=float, help="seconds between re-puts of each export (default 40)")
    p.add_argument(
        "--anti-entropy",
        type=float,
        metavar="SECONDS",
        help="seconds between full gets that repair missed pushes (default 30)",
    )
    p.add_argument(
        "--max-skew",
        type=float,
        metavar="SECONDS",
        help="tolerated clock difference between sites (default 30)",
    )
    p.add_argument(
        "--flap-half-life",
        type=float,
        metavar="SECONDS",
        help="flap damping: hold a local service changing more than 4 times in about "
        "this long (default 10; 0 = off)",
    )
    p.add_argument("--instance-template", help="name for colliding imports (default '{instance} ({site})')")
    p.add_argument("--host-template", help="proxied host name (default '{host}-{site}')")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--mdns",
        choices=["auto", "avahi", "zeroconf"],
        help="link backend: Avahi over D-Bus, python-zeroconf, or auto (default)",
    )
    p.add_argument(
        "--dns-listen",
        metavar="ADDR:PORT",
        help="serve bridged services as unicast DNS-SD here (dig, dns-sd, avahi-browse -d)",
    )
    p.add_argument(
        "--dns-domain",
        metavar="DOMAIN",
        help="the DNS-SD domain served with --dns-listen (default z2z.home.arpa.)",
    )
    p.add_argument("--dns-prefixes", action="append", metavar="PREFIX", help=FIELD_DOCS["dns-prefixes"])
    p.add_argument(
        "--dns-local", action=argparse.BooleanOptionalAction, default=None, help=FIELD_DOCS["dns-local"]
    )
    p.add_argument(
        "--election",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="elect one bridging leader per link and build the leaders' DHT (default on)",
    )
    p.add_argument("--rank", type=int, help="leader preference; higher wins (default 0)")
    p.add_argument(
        "--dht-port",
        type=int,
        metavar="PORT",
        help="UDP port of the leaders' embedded OpenDHT node (default 4222)",
    )
    # Filters (z2z.core.policy).  A bare --export-types / --import-types is an empty list.
    for key in ("export-types", "import-types"):
        p.add_argument(f"--{key}", nargs="*", action="extend", metavar="TYPE", help=FIELD_DOCS[key])
    for key, metavar in (
        ("deny-types", "TYPE"),
        ("export-allow", "GLOB"),
        ("export-deny", "GLOB"),
        ("import-allow", "GLOB"),
        ("import-deny", "GLOB"),
        ("import-from", "SITE"),
        ("import-never-from", "SITE"),
    ):
        p.add_argument(f"--{key}", action="append", metavar=metavar, help=FIELD_DOCS[key] + " Repeatable.")
    for key in ("metrics-listen", "http-listen"):
        p.add_argument(f"--{key}", metavar="[ADDR:]PORT", help=FIELD_DOCS[key])
    # Private networks, trust, address policy, quotas (z2z.core.security, docs/security.md).
    for key, metavar, repeat in (
        ("network-secret", "FILE", False),
        ("site-key", "FILE", False),
        ("trust", "tofu|explicit", False),
        ("trusted-sites", "SITE=KEY", True),
        ("site-allow", "SITE=PREFIX[,PREFIX]", True),
    ):
        p.add_argument(
            f"--{key}",
            action="append" if repeat else "store",
            metavar=metavar,
            help=FIELD_DOCS[key] + (" Repeatable." if repeat else ""),
        )
    for key in ("max-services-per-site", "max-bytes-per-site", "max-sites"):
        p.add_argument(f"--{key}", type=int, metavar="N", help=FIELD_DOCS[key])


def _key_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "keygen",
        help="make a new network secret (private network)",
        description="Write a new random network secret to FILE (mode 0600). Give the "
        "same file to every gateway of the network: z2z run --network-secret FILE",
    )
    p.add_argument("--out", metavar="FILE", required=True, help="where to write the secret")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p = sub.add_parser(
        "show-key",
        help="print this site's public signing key (for trusted-sites)",
        description="Print the public half of this site's Ed25519 key (made if missing), "
        'as other sites pin it: trusted-sites = { SITE = "KEY" }',
    )
    p.add_argument("--state-dir", metavar="DIR", help="the gateway's state directory (default as for run)")
    p.add_argument("--site-key", metavar="FILE", help="the key file (default: site.key in the state dir)")
    p.add_argument("--config", metavar="FILE", help="take state-dir and site-key from this config file")


def _check_parser(sub: Any) -> None:
    p = sub.add_parser(
        "check-config",
        help="validate a config file without starting",
        description="Check every key of a z2z config file; exit 0 when it is fine.",
    )
    p.add_argument("file", nargs="?", default=DEFAULT_CONFIG, help=f"the file (default {DEFAULT_CONFIG})")


def _status_parser(sub: Any) -> None:
    p = sub.add_parser("status", help="show a running gateway's stage, island, DHT and services")
    p.add_argument("--state-dir", metavar="DIR", help="the gateway's state directory (default as for run)")
    p.add_argument("--config", metavar="FILE", help="take state-dir from this config file")
    p.add_argument("--json", action="store_true", help="print the raw status document")


def _query_parsers(sub: Any) -> None:
    for name, helptext in (
        ("browse", "list every site's instances of a type (like dns-sd -B)"),
        ("resolve", "show one instance: host, addresses, port, TXT (like dns-sd -L)"),
    ):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("--rendezvous", metavar="URL", help="as for run (default: the public OpenDHT network)")
        p.add_argument("--network", default="z2z", help="z2z network name (default z2z)")
        p.add_argument("--network-secret", metavar="FILE", help="the private network's secret file")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument(
            "--timeout",
            type=float,
            default=20.0,
            metavar="SECONDS",
            help="give up after this long, leaders' DHT included (default 20)",
        )
        if name == "resolve":
            p.add_argument("instance", help="instance name, e.g. 'Campus Printer'")
        p.add_argument("type", help="service type, e.g. _ipp._tcp")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="z2z", description="Zeroconf-to-Zeroconf gateway")
    parser.add_argument("--version", action="version", version=f"z2z {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    _status_parser(sub)
    _query_parsers(sub)
    _check_parser(sub)
    _key_parsers(sub)
    return parser


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def show_status(args: argparse.Namespace) -> int:
    """Print the status document a running gateway keeps in its state dir."""
    from z2z.app.config import default_state_dir
    from z2z.app.gateway import STATUS_FILE

    path = config_path(args)
    state_dir = args.state_dir or (load_file(path).get("state-dir") if path else None)
    path = os.path.join(state_dir or default_state_dir(), STATUS_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        print(
            f"z2z: no gateway status at {path} (is a gateway running with this --state-dir?)", file=sys.stderr
        )
        return 1
    except (OSError, ValueError) as exc:
        print(f"z2z: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    running = not doc.get("stopped") and _alive(doc.get("pid"))
    doc["running"] = running
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0 if running else 1
    st = doc.get("stages") or {}
    lines = [
        f"gateway   {doc.get('site')} (node {doc.get('node')}, network {doc.get('network')}): "
        + ("running" if running else "NOT running (last status shown)"),
        f"stage     {st.get('stage', '-')} ({st.get('state', 'no election')})",
        f"leader    {st.get('leader') or '-'}" + ("  <- this gateway" if doc.get("bridging") else ""),
        "island    "
        + (
            ", ".join(
                f"{p['node']} ({p['site']}, rank {p['rank']}, {p['state']})" for p in st.get("island", [])
            )
            or "alone"
        ),
        f"dht       structure {st.get('structure') or '-'}, {st.get('structure_size', 0)} leaders, "
        f"{st.get('dht_peers', 0)} peers; bridging via {doc.get('bridging_via')}",
        f"rendezvous {doc.get('rendezvous') or 'public OpenDHT'}: "
        + ("reachable" if doc.get("rendezvous_ok") else "UNREACHABLE")
        + (f" ({', '.join(doc['rendezvous_failing'])})" if doc.get("rendezvous_failing") else ""),
        f"exported  {len(doc.get('exported', []))}: " + ", ".join(doc.get("exported", [])),
        f"imported  {len(doc.get('imported', []))}: " + ", ".join(doc.get("imported", [])),
        "rejected  " + (", ".join(f"{k}={v}" for k, v in sorted(doc.get("rejected", {}).items())) or "none"),
        f"site key  {doc.get('site_key') or '-'} ({'private' if doc.get('private') else 'public'} network)",
        "filtered  " + (", ".join(f"{k}={v}" for k, v in sorted(doc.get("filtered", {}).items())) or "none"),
        "flapping  " + (", ".join(doc.get("flapping", [])) or "none") + " (held by flap damping)",
    ]
    print("\n".join(lines))
    return 0 if running else 1


def config_path(args: argparse.Namespace) -> str | None:
    """--config, else the default file when it exists, else none."""
    if args.config:
        return str(args.config)
    return DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    path = config_path(args)
    file_settings = load_file(path) if path else {}
    flags = {
        key: getattr(args, key.replace("-", "_"))
        for key in FIELDS
        if getattr(args, key.replace("-", "_")) is not None
    }
    return build(file_settings, check_settings(flags, source="command line"))


def setup_logging(level: str) -> None:
    # Under systemd (JOURNAL_STREAM set) the journal adds timestamps itself.
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)
    for noisy in ("httpx", "httpcore", "apscheduler", "tzlocal", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def check_config(args: argparse.Namespace) -> int:
    """`z2z check-config [FILE]`: every problem on its own line, exit 2 if any."""
    problems = check_file(args.file)
    for line in problems:
        print(f"z2z: {line}", file=sys.stderr)
    if problems:
        return EXIT_CONFIG
    print(f"{args.file}: ok")
    return 0


def reload_config(args: argparse.Namespace, gateway: Any) -> None:
    """SIGHUP: read the config file again (flags still win) and apply what can be applied."""
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        log.error("reload failed, keeping the running configuration: %s", exc)
        return
    gateway.reload(config)


async def run_gateway(config: GatewayConfig, args: argparse.Namespace | None = None) -> int:
    from z2z.adapters.link import open_link
    from z2z.adapters.link.base import LinkError
    from z2z.adapters.rendezvous import open_rendezvous
    from z2z.adapters.rendezvous.base import RendezvousError
    from z2z.app.gateway import Gateway
    from z2z.app.keys import KeyFileError, read_secret
    from z2z.app.state import StateError

    if config.network_secret:  # a missing or bad secret file: one line, before touching the network
        try:
            read_secret(config.network_secret)
        except KeyFileError as exc:
            print(f"z2z: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    try:
        link = open_link(config.mdns, config.interface)
    except LinkError as exc:
        print(f"z2z: {exc}", file=sys.stderr)
        return EXIT_LINK
    rendezvous = open_rendezvous(config.rendezvous)
    try:
        gateway = Gateway(config, link, rendezvous)
    except StateError as exc:
        print(f"z2z: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args is not None:
        loop.add_signal_handler(signal.SIGHUP, reload_config, args, gateway)
    try:
        await gateway.start()
    except RendezvousError as exc:
        print(f"z2z: cannot reach rendezvous {config.rendezvous}: {exc}", file=sys.stderr)
        await rendezvous.close()
        return EXIT_RENDEZVOUS
    except LinkError as exc:
        print(f"z2z: {exc}", file=sys.stderr)
        await rendezvous.close()
        return EXIT_LINK
    await stop.wait()
    log.info("stopping: withdrawing exports and imports")
    await gateway.stop()
    return 0


def query(args: argparse.Namespace) -> int:
    """`z2z browse` / `z2z resolve`: read the rendezvous directly, print what is live."""
    from z2z.adapters.rendezvous.base import RendezvousError
    from z2z.app.query import Progress, as_json, fetch
    from z2z.core.records import RecordError, normalize_type

    try:
        service_type = normalize_type(args.type)
        flags = {"network": args.network} | ({"rendezvous": args.rendezvous} if args.rendezvous else {})
        check_settings(flags)
    except (RecordError, ConfigError) as exc:
        print(f"z2z: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    secret = None
    if args.network_secret:
        from z2z.app.keys import KeyFileError, read_secret

        try:
            secret = read_secret(args.network_secret)
        except KeyFileError as exc:
            print(f"z2z: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    if not 1.0 <= args.timeout <= 600:
        print("z2z: --timeout must be between 1 and 600 seconds", file=sys.stderr)
        return EXIT_CONFIG

    async def run_query() -> Any:
        progress = Progress(lambda text: print(text, file=sys.stderr, flush=True))
        progress.start()
        try:
            return await fetch(
                args.rendezvous, args.network, service_type, secret, budget=args.timeout, progress=progress
            )
        finally:
            progress.stop()

    try:
        found = asyncio.run(run_query())
    except RendezvousError as exc:
        print(
            f"z2z: cannot read the rendezvous {args.rendezvous or 'public OpenDHT'}: {exc}", file=sys.stderr
        )
        return EXIT_RENDEZVOUS
    for warning in found.warnings:
        print(warning, file=sys.stderr)
    envs = found.envelopes
    if args.command == "resolve":
        envs = [e for e in envs if e.service.instance == args.instance]
        if not envs:
            print(
                f"z2z: no live instance {args.instance!r} of {service_type} in network {args.network}",
                file=sys.stderr,
            )
            return 1
    if args.json:
        print(json.dumps([as_json(e) for e in envs], indent=2))
    elif args.command == "browse":
        print(f"{'instance':40} {'site':20} {'port':>5}  address")
        for e in envs:
            print(
                f"{e.service.instance:40} {e.site:20} {e.service.port:>5}  " + " ".join(e.service.addresses)
            )
    else:
        for e in envs:
            s = e.service
            print(f"{s.instance}.{s.type} (site {e.site}) can be reached at {s.host}.local.:{s.port}")
            print(f"  addresses: {' '.join(s.addresses)}")
            print("  TXT: " + " ".join(t.decode("utf-8", errors="backslashreplace") for t in s.txt))
    return 0


def keygen(args: argparse.Namespace) -> int:
    """`z2z keygen --out FILE [--force]`: a new network secret, mode 0600."""
    from z2z.app.keys import KeyFileError, new_secret

    try:
        new_secret(args.out, force=args.force)
    except KeyFileError as exc:
        print(f"z2z: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"wrote a new network secret to {args.out}; copy it to every gateway of the network "
        f"and run them with --network-secret {args.out}"
    )
    return 0


def show_key(args: argparse.Namespace) -> int:
    """`z2z show-key`: this site's public key, as other sites' trusted-sites want it."""
    from z2z.app.config import default_state_dir
    from z2z.app.keys import KeyFileError, load_signing_key, site_key_path
    from z2z.core.security import format_public_key, public_key_bytes

    path = config_path(args)
    settings = load_file(path) if path else {}
    state_dir = args.state_dir or settings.get("state-dir") or default_state_dir()
    try:
        key = load_signing_key(site_key_path(state_dir, args.site_key or settings.get("site-key")))
    except KeyFileError as exc:
        print(f"z2z: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(format_public_key(public_key_bytes(key)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        try:
            config = config_from_args(args)
        except ConfigError as exc:
            print(f"z2z: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        setup_logging(config.log_level)
        return asyncio.run(run_gateway(config, args))
    if args.command == "check-config":
        return check_config(args)
    if args.command in ("browse", "resolve"):
        return query(args)
    if args.command == "keygen":
        return keygen(args)
    if args.command == "show-key":
        try:
            return show_key(args)
        except ConfigError as exc:
            print(f"z2z: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    if args.command == "status":
        try:
            return show_status(args)
        except ConfigError as exc:
            print(f"z2z: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    parser.error(f"unknown command {args.command}")
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
