"""The admin's controls on the namespace testbed, with real gateways, real mDNS and
a real dhtnode rendezvous: filters and one-way bridging (changed by SIGHUP), and
two IPv6-only campus LANs bridging each other."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from support.testbed import REPO, Proc, Testbed, matching

pytestmark = pytest.mark.netns

T = "_ipp._tcp"


NOBODY = 65534


def gateway(tb: Testbed, host: str, site: str, rendezvous: str, *extra: str, as_nobody: bool = False) -> Proc:
    """`z2z run` on `host`; `as_nobody` runs it as contrib/z2z.service does: an unprivileged
    user, no new privileges, the state directory named by $STATE_DIRECTORY."""
    state = tb.workdir / f"state-{host}"
    prefix: list[str] = []
    env: dict[str, str] = {}
    python = sys.executable
    cwd: Path | None = None
    if as_nobody:
        state.mkdir()
        os.chown(state, NOBODY, NOBODY)
        tb.workdir.chmod(0o711)
        # The checkout may sit where nobody cannot read it (a clone under /root, mode
        # 0700): in a private mount namespace it is bound at a path nobody can reach,
        # so the unprivileged gateway runs this very tree and its venv.
        view = tb.workdir / "checkout"
        view.mkdir(mode=0o755)
        bind = 'mount --bind "$0" "$1" && shift && exec "$@"'
        prefix = ["unshare", "--mount", "--propagation", "private", "--"]
        prefix += ["sh", "-c", bind, str(REPO), str(view)]
        prefix += ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--no-new-privs"]
        if Path(sys.executable).is_relative_to(REPO):
            python = str(view / Path(sys.executable).relative_to(REPO))
        env = {"STATE_DIRECTORY": str(state), "HOME": "/nonexistent", "PYTHONPATH": str(view)}
        cwd = view
    proc = tb.spawn(
        host,
        [
            *prefix,
            python,
            "-m",
            "z2z",
            "run",
            "--public",
            "--site",
            site,
            "--interface",
            "lan0",
            "--rendezvous",
            rendezvous,
            "--log-level",
            "debug",
            *extra,
            *([] if as_nobody else ["--state-dir", str(state)]),
        ],
        name=f"{host}-z2z",
        env=env,
        cwd=cwd,
    )
    proc.wait_line(r"INFO z2z\.app\.bridging: bridging", timeout=30, stream="stderr")
    return proc


def printer(tb: Testbed, host: str, name: str, address: str, *extra: str) -> Proc:
    proc = tb.spawn_tool(
        host,
        "mdns_printer",
        "--name",
        name,
        "--type",
        T,
        "--port",
        "631",
        "--host",
        name.split()[0].lower(),
        "--address",
        address,
        "--txt",
        "rp=ipp/print",
        *extra,
        name=f"{host}-{name.replace(' ', '_')}",
    )
    proc.wait_event("registered", timeout=15)
    return proc


def status(tb: Testbed, host: str) -> dict:
    return json.loads((tb.workdir / f"state-{host}" / "status.json").read_text())


def ups(watch: Proc, after: int = 0) -> list[str]:
    return [e["instance"] for e in watch.events()[after:] if e.get("event") == "up"]


def test_filters_one_way_and_reload(testbed: Testbed) -> None:
    """A exports only (minus "Secret*"), B imports only (minus "Lab *", from a file that
    SIGHUP re-reads): what a rule stops never reaches the DHT or B's link."""
    tb = testbed
    dht = tb.start_dht()
    conf_b = Path(tb.workdir / "b.toml")
    conf_b.write_text('export-types = []\nimport-types = ["_ipp._tcp"]\nimport-deny = ["Lab *"]\n')
    # No election: bridging stays in the rendezvous (no leaders' DHT), where the test reads it.
    gw_a = gateway(
        tb,
        "a-gw",
        "campus-a",
        dht.proxy_urls[0],
        "--export-types",
        T,
        "--import-types",
        "--export-deny",
        "Secret*",
        "--no-election",
    )
    gw_b = gateway(tb, "b-gw", "campus-b", dht.proxy_urls[1], "--config", str(conf_b), "--no-election")
    watch_b = tb.spawn_tool("b-client", "mdns_watch", "--type", T)
    watch_a = tb.spawn_tool("a-printer", "mdns_watch", "--type", T, name="a-watch")
    watch_b.wait_event("browsing")
    watch_a.wait_event("browsing")
    a_ip, b_ip = tb.node("a-printer").ipv4, tb.node("b-client").ipv4
    for name in ("Campus Printer", "Secret Printer", "Lab Printer"):
        printer(tb, "a-printer", name, a_ip)
    printer(tb, "b-client", "B Printer", b_ip)

    watch_b.wait_event(matching("up", instance="Campus Printer"), timeout=20)
    time.sleep(3)  # whatever a broken filter would let through has had time to cross
    assert sorted(ups(watch_b)) == ["B Printer", "Campus Printer"]  # B Printer is B's own
    assert sorted(ups(watch_a)) == ["Campus Printer", "Lab Printer", "Secret Printer"]
    in_dht = {(e.site, e.service.instance) for e in tb.dht_values(dht.proxy_urls[0]) if not e.gone}
    assert in_dht == {("campus-a", "Campus Printer"), ("campus-a", "Lab Printer")}
    assert status(tb, "a-gw")["filtered"] == {"export-deny": 1}
    assert status(tb, "b-gw")["filtered"] == {"export-types": 1, "import-deny": 1}
    out = tb.node("b-gw").run(
        sys.executable, "-m", "z2z", "status", "--state-dir", str(tb.workdir / "state-b-gw")
    )
    assert "filtered  export-types=1, import-deny=1" in out.stdout

    # SIGHUP: B now denies nothing but "Campus*"; Lab Printer appears, Campus Printer goes
    mark = watch_b.mark()
    conf_b.write_text('export-types = []\nimport-types = ["_ipp._tcp"]\nimport-deny = ["Campus*"]\n')
    gw_b.signal(1)
    watch_b.wait_event(matching("up", instance="Lab Printer"), timeout=15, after=mark)
    watch_b.wait_event(matching("down", instance="Campus Printer"), timeout=15, after=mark)
    gw_b.wait_line(r"configuration reloaded \(import-deny\)", timeout=5, stream="stderr")

    # a broken file is refused whole; the gateway keeps running as it was
    conf_b.write_text('import-deny = "Lab\n')
    gw_b.signal(1)
    gw_b.wait_line(r"reload failed, keeping the running configuration", timeout=5, stream="stderr")
    assert gw_b.alive and gw_a.alive
    assert gw_a.stop(timeout=15) == 0 and gw_b.stop(timeout=15) == 0
    assert "Traceback" not in gw_a.stderr() + gw_b.stderr()


def test_ipv6_only_campuses_bridge(testbed: Testbed) -> None:
    """No IPv4 at all on either LAN: mDNS over IPv6, the rendezvous over IPv6, AAAA only."""
    tb = testbed
    dht = tb.start_dht()
    for host in ("a-gw", "a-printer", "b-gw", "b-client"):
        tb.node(host).run("ip", "-4", "addr", "flush", "dev", "lan0")
    for router in ("ra", "rb"):
        tb.node(router).run("ip", "-4", "addr", "flush", "dev", "br-lan")
    assert "inet " not in tb.node("a-gw").run("ip", "addr", "show", "dev", "lan0").stdout
    url = f"http://[fd77::1]:{dht.proxy_ports[0]}"
    watch = tb.spawn_tool("b-client", "mdns_watch", "--type", T, "--ip-version", "6")
    watch.wait_event("browsing")
    gw_a = gateway(tb, "a-gw", "campus-a", url, "--type", T, as_nobody=True)
    b6 = tb.node("b-gw").ipv6  # the status page and metrics, served over IPv6 too
    gw_b = gateway(
        tb,
        "b-gw",
        "campus-b",
        url,
        "--type",
        T,
        "--http-listen",
        f"[{b6}]:8464",
        "--metrics-listen",
        f"[{b6}]:9464",
    )
    v6 = tb.node("a-printer").ipv6
    printer(tb, "a-printer", "Campus Printer", v6, "--ip-version", "6")
    up = watch.wait_event(matching("up", instance="Campus Printer"), timeout=25)
    assert up["addresses"] == [v6] and up["host"] == "campus-campus-a-z2z.local."
    assert tb.ping("b-client", v6) is not None  # and it is reachable from campus B
    deadline = time.monotonic() + 5  # status.json is rewritten every second
    while [s["addresses"] for s in status(tb, "b-gw")["services"] if s["direction"] == "import"] != [[v6]]:
        assert time.monotonic() < deadline, status(tb, "b-gw")
        time.sleep(0.2)
    assert status(tb, "b-gw")["bridging"]
    assert (tb.workdir / "state-a-gw" / "status.json").stat().st_uid == NOBODY  # A runs unprivileged
    # scraped from campus B's client, as a Prometheus server on that LAN would
    code, metrics = tb.http_get("b-client", f"http://[{b6}]:9464/metrics")
    assert code == 200, metrics
    assert 'z2z_services{direction="import",site="campus-a",type="_ipp._tcp"} 1.0' in metrics
    assert "z2z_leader 1.0" in metrics and "z2z_rendezvous_operation_seconds_count" in metrics
    doc = tb.http_json("b-client", f"http://[{b6}]:8464/status.json")
    assert [s["instance"] for s in doc["services"]] == ["Campus Printer"]
    assert gw_a.stop(timeout=15) == 0 and gw_b.stop(timeout=15) == 0
    assert "Traceback" not in gw_a.stderr() + gw_b.stderr()


def test_every_type_seen_on_the_link_minus_denied(testbed: Testbed) -> None:
    """`--type "*"`: A finds types through the _services._dns-sd._udp meta-query and
    exports them all but the denied one; B imports `"*"` and learns _daap._tcp,
    which its own link never showed, from the DHT's type index."""
    tb = testbed
    dht = tb.start_dht()
    watch = tb.spawn_tool("b-client", "mdns_watch", "--type", "_daap._tcp", "--type", T)
    watch.wait_event("browsing")
    ip = tb.node("a-printer").ipv4
    printer(tb, "a-printer", "Campus Printer", ip)  # _ipp._tcp: denied
    music = tb.spawn_tool(
        "a-printer",
        "mdns_printer",
        "--name",
        "Music",
        "--type",
        "_daap._tcp",
        "--port",
        "3689",
        "--host",
        "nas",
        "--address",
        ip,
        name="a-music",
    )
    music.wait_event("registered", timeout=15)
    gw_a = gateway(
        tb, "a-gw", "campus-a", dht.proxy_urls[0], "--type", "*", "--deny-types", T, "--no-election"
    )
    gw_b = gateway(
        tb, "b-gw", "campus-b", dht.proxy_urls[1], "--export-types", "--import-types", "*", "--no-election"
    )
    up = watch.wait_event(matching("up", instance="Music"), timeout=20)
    assert up["type"].startswith("_daap._tcp") and up["port"] == 3689
    time.sleep(2)
    assert ups(watch) == ["Music"]
    st = status(tb, "a-gw")
    assert "_daap._tcp" in st["types"]["seen"] and T not in st["types"]["seen"]
    assert st["filtered"].get("deny-types") == 1
    assert status(tb, "b-gw")["types"]["exported_elsewhere"] == ["_daap._tcp"]
    assert gw_a.stop(timeout=15) == 0 and gw_b.stop(timeout=15) == 0
