"""Helpers for tests with a real avahi-daemon per testbed host (tests/support/testbed.py).

What other stacks see is what these tests check: ``avahi-browse`` output parsed
here, and restarts of a host's daemon on its private bus.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from typing import Any

from support.testbed import Avahi, Testbed

AVAHI_TOOLS = ("avahi-daemon", "dbus-daemon", "avahi-browse", "avahi-publish", "unshare")


def missing_tools() -> list[str]:
    """The programs these tests need that are not installed (avahi-daemon, avahi-utils, dbus)."""
    return [t for t in AVAHI_TOOLS if shutil.which(t) is None]


def unescape(name: str) -> str:
    """avahi-browse -p's escaped label (``Proxy\\032Printer``) back to text."""
    raw = re.sub(rb"\\(\d{3})", lambda m: bytes([int(m.group(1))]), name.encode())
    return re.sub(rb"\\(.)", rb"\1", raw).decode("utf-8")


def parse_browse(text: str) -> list[dict[str, Any]]:
    """``avahi-browse -p`` output: ``+``/``-`` lines as events, ``=`` lines resolved."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        f = line.split(";")
        if f[0] == "=" and len(f) >= 10:
            txt = [m.replace('\\"', '"') for m in re.findall(r'"((?:[^"\\]|\\.)*)"', ";".join(f[9:]))]
            out.append({"proto": f[2], "instance": unescape(f[3]), "host": f[6], "address": f[7],
                        "port": int(f[8]), "txt": txt})  # fmt: skip
        elif f[0] in "+-" and len(f) >= 6:
            out.append({"proto": f[2], "instance": unescape(f[3]), "event": f[0]})
    return out


def browse(
    tb: Testbed, host: str, resolve: bool = True, service_type: str = "_ipp._tcp"
) -> list[dict[str, Any]]:
    """``avahi-browse -pt[r]k TYPE`` through `host`'s daemon, parsed (names unescaped).

    Resolved services have ``host``, ``address``, ``port`` and ``txt`` (as avahi
    lists it: avahi 0.8 shows TXT strings in reverse wire order).
    """
    flags = "-rptk" if resolve else "-ptk"
    r = tb.node(host).run(
        "avahi-browse", flags, service_type, env=tb.avahis[host].env, check=False, timeout=60
    )
    return parse_browse(r.stdout)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def restart_avahi(tb: Testbed, host: str, *, crash: bool, extra_conf: str = "") -> Avahi:
    """Stop `host`'s avahi-daemon (SIGTERM, or SIGKILL with `crash`) and start it again.

    Same namespace, same private bus, same configuration file (plus
    `extra_conf` lines in ``[server]``), as a ``systemctl restart`` would.
    """
    old = tb.avahis[host]
    if crash:
        old.daemon.kill()
    else:
        old.daemon.stop()
    conf = tb.workdir / f"avahi-{host}" / "avahi-daemon.conf"
    if extra_conf:
        conf.write_text(conf.read_text().replace("[server]\n", f"[server]\n{extra_conf}\n", 1))
    script = (
        "mount -t tmpfs -o mode=0755 z2z-testbed /run\n"
        "mkdir -p /run/avahi-daemon\n"
        "if [ -d /etc/avahi/services ]; then mount -t tmpfs z2z-testbed /etc/avahi/services; fi\n"
        f"exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f {conf}\n"
    )
    daemon = tb.spawn(host, ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
                      name=f"{host}-avahi", env=old.env)  # fmt: skip
    daemon.wait_line("Server startup complete", timeout=15, stream="stderr")
    new = Avahi(host, old.bus_address, daemon, old.bus)
    tb.avahis[host] = new
    return new
