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
    FIELDS,
    ConfigError,
    GatewayConfig,
    add_flags,
    build,
    check_file,
    check_settings,
    load_file,
)

EXIT_CONFIG = 2
EXIT_RENDEZVOUS = 3
EXIT_LINK = 4

log = logging.getLogger(__name__)


def _run_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run a gateway", description="Bridge DNS-SD services of this link.")
    p.add_argument(
        "--config",
        metavar="FILE",
        help=f"TOML file with the same keys as these flags ({DEFAULT_CONFIG} if it exists)",
    )
    add_flags(p)  # one flag per setting, from the config table (z2z.app.config.schema)


def _key_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "keygen",
        help="make a new network secret (a new private network, or a rotation)",
        description="Write a new random network secret (mode 0600), by default where this gateway "
        "reads its own (network-secret, else network.secret in the state dir). With --force over an "
        "existing one (a rotation) the network name is kept; then give every gateway the new secret "
        "(z2z invite here, z2z join --force CODE there).",
    )
    p.add_argument("--out", metavar="FILE", help="where to write the secret (default: the gateway's)")
    p.add_argument("--force", action="store_true", help="overwrite an existing secret")
    p.add_argument("--network", help="network name to store with the secret (default: keep the old one)")
    _membership_args(p)
    p = sub.add_parser(
        "invite",
        help="print a join code for another gateway (makes this one's secret if missing)",
        description="Print a join code carrying this gateway's network secret and network name "
        "(its last line of output). The code IS the secret: send it only over a channel you trust. "
        "On the new gateway, before its first start: z2z join CODE",
    )
    _membership_args(p)
    p = sub.add_parser(
        "join",
        help="make this gateway a member of another gateway's private network",
        description="Store the secret and network name of a join code (from z2z invite) where "
        "z2z run reads them (mode 0600). A bad code changes nothing (exit status 2).",
    )
    p.add_argument("code", help="the join code printed by z2z invite")
    p.add_argument("--force", action="store_true", help="replace a different existing network secret")
    _membership_args(p)
    p = sub.add_parser(
        "show-key",
        help="print this site's public signing key (for trusted-sites)",
        description="Print the public half of this site's Ed25519 key (made if missing), "
        'as other sites pin it: trusted-sites = { SITE = "KEY" }',
    )
    p.add_argument("--state-dir", metavar="DIR", help="the gateway's state directory (default as for run)")
    p.add_argument("--site-key", metavar="FILE", help="the key file (default: site.key in the state dir)")
    p.add_argument("--config", metavar="FILE", help="take state-dir and site-key from this config file")


def _membership_args(p: argparse.ArgumentParser, *, public: bool = False) -> None:
    """Which gateway's network: a config file, a state dir or a secret file (as for run)."""
    p.add_argument("--config", metavar="FILE", help=f"the gateway's config file (default {DEFAULT_CONFIG})")
    p.add_argument("--state-dir", metavar="DIR", help="the gateway's state directory (default as for run)")
    p.add_argument("--network-secret", metavar="FILE", help="the secret file (default as for run)")
    if public:
        p.add_argument("--public", action="store_true", default=None, help="the open mode (no secret)")


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
        p.add_argument("--network", help="z2z network name (default: as for run)")
        _membership_args(p, public=True)
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
    from z2z.app.status import STATUS_FILE

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
        "quotas    " + (over_quota_summary(doc.get("over_quota") or {}) or "every site within its quotas"),
        f"site key  {doc.get('site_key') or '-'} ({'private' if doc.get('private') else 'public'} network)",
        "filtered  " + (", ".join(f"{k}={v}" for k, v in sorted(doc.get("filtered", {}).items())) or "none"),
        "flapping  " + (", ".join(doc.get("flapping", [])) or "none") + " (held by flap damping)",
        _relay_line(doc.get("relay")),
    ]
    print("\n".join(lines))
    return 0 if running else 1


def _relay_line(relay: dict[str, Any] | None) -> str:
    """``relay     ...``: the mode, the endpoint, and each import not shown with its own addresses."""
    if not relay:
        return "relay     off"
    routed = [
        f"{i['instance']}.{i['type']} from {i['site']}: {i['route']}"
        + (f" ({i['reason']})" if i.get("reason") else "")
        for i in relay.get("imports", [])
        if i.get("route") != "direct"
    ]
    return f"relay     {relay.get('mode')}, endpoint {relay.get('endpoint') or '-'}; " + (
        ", ".join(routed) or "no import relayed"
    )


def over_quota_summary(over: dict[str, dict[str, Any]]) -> str:
    """The sites over a quota, for `z2z status`: what they hold, the limit, how many refused."""
    return "; ".join(
        f"{site} OVER {e['setting']} ({e['held']}/{e['limit']}, {e['refused']} refused)"
        for site, e in sorted(over.items())
    )


def config_path(args: argparse.Namespace) -> str | None:
    """--config, else the default file when it exists, else none."""
    if args.config:
        return str(args.config)
    return DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None


def given_settings(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config file's settings and the flags given, each checked."""
    path = config_path(args)
    file_settings = load_file(path) if path else {}
    flags = {
        key: getattr(args, key.replace("-", "_"))
        for key in FIELDS
        if getattr(args, key.replace("-", "_"), None) is not None
    }
    return file_settings, check_settings(flags, source="command line")


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    return build(*given_settings(args))


def network_given(args: argparse.Namespace | None) -> bool:
    """Whether the config file or a flag names the network (it must then match a joined one)."""
    if args is None:
        return False
    file_settings, flags = given_settings(args)
    return "network" in file_settings or "network" in flags


def member_config(args: argparse.Namespace) -> tuple[GatewayConfig, Any]:
    """The config with its network membership resolved (z2z.app.membership): private by default."""
    from z2z.app.membership import resolve

    return resolve(config_from_args(args), network_given=network_given(args))


def invite_command(args: argparse.Namespace | None) -> str:
    """The `z2z invite` that reads the same secret as this `z2z run`."""
    import shlex

    words = ["z2z", "invite"]
    for flag in ("config", "state_dir", "network_secret"):
        if getattr(args, flag, None):
            words += ["--" + flag.replace("_", "-"), shlex.quote(str(getattr(args, flag)))]
    return " ".join(words)


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
        config, _ = member_config(args)
    except (ConfigError, OSError) as exc:
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
    from z2z.app.membership import resolve, start_message
    from z2z.app.state import StateError

    if config.network_secret:  # a missing or bad secret file: one line, before touching the network
        try:
            read_secret(config.network_secret)
        except KeyFileError as exc:
            print(f"z2z: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    try:
        link = open_link(config.mdns, config.interface, config.subtypes)
    except LinkError as exc:
        print(f"z2z: {exc}", file=sys.stderr)
        return EXIT_LINK
    try:  # private by default (z2z.app.membership): the secret is made on first start
        config, member = resolve(config, network_given=network_given(args), create=True)
    except (ConfigError, OSError) as exc:
        print(f"z2z: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    (log.info if member.private else log.warning)(start_message(member, invite_command(args)))
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


def query_network(args: argparse.Namespace) -> tuple[str, bytes | None]:
    """`z2z browse` / `resolve`: the network and secret, chosen as `z2z run` chooses them."""
    from z2z.app.keys import read_secret

    flags: dict[str, Any] = {
        k: v
        for k, v in (
            ("network", args.network),
            ("state-dir", args.state_dir),
            ("network-secret", args.network_secret),
            ("public", args.public),
        )
        if v is not None
    }
    file_settings = load_file(path) if (path := config_path(args)) else {}
    if args.network_secret or args.state_dir:  # a secret named here beats the file's public = true
        file_settings.pop("public", None)
    if args.public:
        file_settings.pop("network-secret", None)
    flags = check_settings(flags, source="command line")
    config = build(file_settings, flags)
    from z2z.app.membership import resolve

    config, _ = resolve(config, network_given="network" in file_settings or "network" in flags)
    return config.network, read_secret(config.network_secret) if config.network_secret else None


def query(args: argparse.Namespace) -> int:
    """`z2z browse` / `z2z resolve`: read the rendezvous directly, print what is live."""
    from z2z.adapters.rendezvous.base import RendezvousError
    from z2z.app.query import Progress, as_json, fetch, rejected_line
    from z2z.core.records import RecordError, normalize_type

    try:
        service_type = normalize_type(args.type)
        if args.rendezvous:
            check_settings({"rendezvous": args.rendezvous})
        network, secret = query_network(args)
    except (RecordError, ConfigError, OSError) as exc:
        print(f"z2z: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    if not 1.0 <= args.timeout <= 600:
        print("z2z: --timeout must be between 1 and 600 seconds", file=sys.stderr)
        return EXIT_CONFIG

    async def run_query() -> Any:
        progress = Progress(lambda text: print(text, file=sys.stderr, flush=True))
        progress.start()
        try:
            return await fetch(
                args.rendezvous, network, service_type, secret, budget=args.timeout, progress=progress
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
    if (line := rejected_line(found, network)) is not None:
        print(line, file=sys.stderr)
    envs = found.envelopes
    if args.command == "resolve":
        envs = [e for e in envs if e.service.instance == args.instance]
        if not envs:
            print(
                f"z2z: no live instance {args.instance!r} of {service_type} in network {network}",
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
            if e.service.subtypes:
                print(f"{'':40}   subtypes: " + " ".join(e.service.subtypes))
    else:
        for e in envs:
            s = e.service
            print(f"{s.instance}.{s.type} (site {e.site}) can be reached at {s.host}.local.:{s.port}")
            print(f"  addresses: {' '.join(s.addresses)}")
            print("  TXT: " + " ".join(t.decode("utf-8", errors="backslashreplace") for t in s.txt))
            if s.subtypes:
                print(f"  subtypes: {' '.join(f'{sub}._sub.{s.type}' for sub in s.subtypes)}")
    return 0


def membership_config(args: argparse.Namespace) -> tuple[GatewayConfig, bool]:
    """The config `invite`, `join` and `keygen` act on, and whether it names the network."""
    file_settings = load_file(path) if (path := config_path(args)) else {}
    flags = {k: v for k, v in (("state-dir", args.state_dir), ("network-secret", args.network_secret)) if v}
    if args.network_secret or args.state_dir:
        file_settings.pop("public", None)
    config = build(file_settings, check_settings(flags, source="command line"))
    return config, "network" in file_settings


def keygen(args: argparse.Namespace) -> int:
    """`z2z keygen [--out FILE] [--force]`: a new network secret, mode 0600."""
    from z2z.app.keys import KeyFileError, new_secret, read_secret_file
    from z2z.app.membership import secret_location
    from z2z.core.security import network_fingerprint

    try:
        config: GatewayConfig | None = None
        out: str = args.out
        if not out:  # where the gateway reads its own secret (--out needs no config)
            config = membership_config(args)[0]
            out = str(secret_location(config, credentials=False)[0])
        network = args.network
        if network is not None:
            check_settings({"network": network})
        elif os.path.exists(out):
            try:
                network = read_secret_file(out)[1]  # a rotation keeps the network's name
            except KeyFileError:
                network = None
        if not args.out:
            os.makedirs(os.path.dirname(out) or ".", mode=0o700, exist_ok=True)
        secret = new_secret(out, force=args.force, network=network)
    except (ConfigError, KeyFileError) as exc:
        print(f"z2z: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(
            f"z2z: cannot create the directory of {args.out or 'the secret'}: {exc.strerror}", file=sys.stderr
        )
        return EXIT_CONFIG
    name = network or (config.network if config else "z2z")
    print(
        f"wrote a new network secret to {out} (network {name}, id {network_fingerprint(secret, name)}); "
        "every gateway of the network needs it: `z2z invite` here, then `z2z join CODE` "
        "(with --force where an old secret is) on each other gateway, and restart them"
    )
    return 0


def invite(args: argparse.Namespace) -> int:
    """`z2z invite`: this gateway's join code on the last line of stdout."""
    from z2z.app.membership import invite as make_invite

    try:
        config, network_given = membership_config(args)
        code, member = make_invite(config, network_given=network_given)
    except (ConfigError, OSError) as exc:
        print(f"z2z: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if member.created:
        print(f"z2z: made a new network secret in {member.path}", file=sys.stderr)
    print(
        f"z2z: join code of private network {member.network} (id {member.fingerprint}). It IS the "
        "network's secret: whoever has it can read and announce this network's services. Send it "
        "only over a channel you trust. On the new gateway, before its first start: z2z join CODE",
        file=sys.stderr,
    )
    print(code)
    return 0


def join(args: argparse.Namespace) -> int:
    """`z2z join CODE`: store a network's secret and name; a bad code changes nothing."""
    from z2z.app.membership import join as do_join

    try:
        config, network_given = membership_config(args)
        member = do_join(config, args.code, network_given=network_given, force=args.force)
    except (ConfigError, OSError) as exc:
        print(f"z2z: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    state = "joined" if member.created else "already a member of"
    print(
        f"{state} private network {member.network} (id {member.fingerprint}); secret in {member.path}. "
        "Start (or restart) the gateway: z2z run, or systemctl restart z2z"
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
    if args.command == "invite":
        return invite(args)
    if args.command == "join":
        return join(args)
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
