"""The corpus part of the interop matrix (tests/e2e/test_interop_matrix_e2e.py, docs/interop.md).

Every record of tests/data/device_records.json is published on campus A by each
publisher (avahi-daemon over D-Bus, ``@homebridge/ciao``, ``bonjour-service``,
python-zeroconf), under its corpus name plus `` [<tag>]`` and on its corpus host
plus ``-<tag>`` (so the stacks do not collide), with a-printer's addresses (its
IPv6 one too where the corpus host has IPv6).  Each client on campus B reports
what it sees, and every field it can read is compared with the corpus entry.

What a stack cannot say is not skipped silently: `NOT_APPLICABLE` lists each
(publisher, record) with the aspect and the reason, and the test checks on A,
without z2z in the way, that the stack still cannot (so an upstream fix shows up
as a failure that asks for the table to shrink):

* ``name``: the stack cannot write a dot inside a label; the record is published
  with ``_`` for each dot, and a probe name with a dot is published as it is, which
  avahi-browse on A must not list under that name.
* ``port0``: the stack refuses port 0 (its own error is checked); not published.
* ``txt``: the stack takes TXT as a key -> value object (no key without ``=``, no
  repeated key, no bytes); avahi-browse on A must show a TXT other than the
  corpus's, and on B that TXT is what is expected.
* ``srv``: the stack's API has no SRV priority/weight; multicast-dns on A must read
  0/0, and 0/0 is what is expected on B.
* ``host``: the stack cannot put a second service on one host name (it renames the
  service ``(2)``): each such record gets a host of its own, and a probe service on
  the dot probe's host must be renamed so.
* ``subtypes``: the stack refuses the subtype registration (its own error is
  checked); no subtypes are expected on B.

The gateways' Avahi backend publishes every proxy with SRV priority/weight 0/0
(``EntryGroup.AddService`` has no such arguments), so clients on B's link read
0/0 with that backend; the unicast front end answers from the DHT value and keeps
them.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from support.testbed import Proc, Testbed

CORPUS: list[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "device_records.json").read_text()
)["services"]
PUBLISHERS = {"avahi": "avahi", "ciao": "ciao", "bonjour-service": "bonjour", "python-zeroconf": "zc"}
CLIENTS = ["avahi-browse", "bonjour-service", "multicast-dns", "mdns-scan", "python-zeroconf", "dig"]
TYPES = sorted({r["type"] for r in CORPUS})
SUBTYPES = sorted({f"{s}._sub.{r['type']}" for r in CORPUS for s in r.get("subtypes", [])})
SITE_A = "campus-a"
DNS_DOMAIN = "z2z.home.arpa."
DNS_SERVER = "10.77.2.2"
# A name with a dot, published as it is by the stacks that cannot write one (aspect "name").
DOT_PROBE = "Dot Probe 2.0"
# A second service on the dot probe's host, published by ciao (aspect "host").
HOST_PROBE = "Host Probe [ciao]"


def key(rec: dict[str, Any]) -> str:
    return f"{rec['type']}:{rec['instance']}"


RECORDS = {key(r): r for r in CORPUS}

_DOTS = "writes the instance name split at every dot (several labels), not one label"
_OBJ_TXT = (
    "takes TXT as a {key: value} object and writes key=value for each key: no key without '=',"
    " no repeated key, no raw bytes"
)
_NO_SRV = "has no SRV priority/weight in its publishing API (always 0/0)"
_PORT0 = "refuses port 0 (its service config requires a port)"
_NPM = {
    ("_device-info._tcp:Dr. Smith's MacBook Pro", "name"): "",
    ("_device-info._tcp:Dr. Smith's MacBook Pro", "port0"): _PORT0,
    ("_http._tcp:Edge Cases 2.0", "name"): "",
    ("_http._tcp:Edge Cases 2.0", "txt"): _OBJ_TXT,
    ("_http._tcp:Backup Web 2.0", "name"): "",
    ("_http._tcp:Backup Web 2.0", "srv"): _NO_SRV,
}
# (publisher, record key) -> {aspect: reason}.  Every entry is checked (see the module docstring).
NOT_APPLICABLE: dict[tuple[str, str], dict[str, str]] = {}
for (_rec, _aspect), _reason in _NPM.items():
    for _pub, _dots in (
        ("ciao", "(DNSLabelCoder) " + _DOTS),
        ("bonjour-service", "replaces every dot of the instance name with '-'"),
    ):
        NOT_APPLICABLE.setdefault((_pub, _rec), {})[_aspect] = _reason or _dots
for _rec in (
    "_device-info._tcp:Dr. Smith's MacBook Pro",
    "_http._tcp:Edge Cases 2.0",
    "_http._tcp:Backup Web 2.0",
):
    NOT_APPLICABLE.setdefault(("python-zeroconf", _rec), {})["name"] = _DOTS + " (its issue #146)"
for _rec in (
    "_ipp._tcp:HP Color LaserJet MFP M283fdw (2A1B3C)",
    "_ipps._tcp:HP Color LaserJet MFP M283fdw (2A1B3C)",
):
    NOT_APPLICABLE.setdefault(("python-zeroconf", _rec), {})["subtypes"] = (
        "files a ServiceInfo under one type (ServiceRegistry.types): a subtype is a second registration"
        " of the same name, refused with ServiceNameAlreadyRegistered"
    )
_seen_hosts: set[str] = set()
for _r in CORPUS:
    if _r["host"] in _seen_hosts:
        NOT_APPLICABLE.setdefault(("ciao", key(_r)), {})["host"] = (
            "probes every service's host name as the service's own: a second service on one host"
            " name collides with the first and is renamed ' (2)'"
        )
    _seen_hosts.add(_r["host"])
NOT_APPLICABLE[("avahi", "_http._tcp:Backup Web 2.0")] = {"srv": "EntryGroup.AddService " + _NO_SRV}
# Check on A that each refusal is the stack's own: a pattern of its error.
REFUSAL = {
    ("ciao", "port0"): "port must be defined",
    ("bonjour-service", "port0"): "requires `port`",
    ("python-zeroconf", "subtypes"): "ServiceNameAlreadyRegistered",
}


def published_name(publisher: str, rec: dict[str, Any]) -> str:
    name = rec["instance"]
    if "name" in NOT_APPLICABLE.get((publisher, key(rec)), {}):
        name = name.replace(".", "_")
    return f"{name} [{PUBLISHERS[publisher]}]"


def published_host(publisher: str, rec: dict[str, Any]) -> str:
    """The host label `publisher` publishes `rec` on (a host of its own where it cannot share one)."""
    host = f"{rec['host']}-{PUBLISHERS[publisher]}"
    if "host" in NOT_APPLICABLE.get((publisher, key(rec)), {}):
        host += "-" + rec["type"].split(".")[0].lstrip("_")
    return host


def spec(publisher: str) -> list[dict[str, Any]]:
    """What `publisher` is asked to publish: every corpus record, then the dot probe."""
    tag = PUBLISHERS[publisher]
    out = []
    for rec in CORPUS:
        na = NOT_APPLICABLE.get((publisher, key(rec)), {})
        out.append(
            {
                "name": published_name(publisher, rec),
                "type": rec["type"],
                "port": rec["port"],
                "host": published_host(publisher, rec),
                "txt": rec["txt"],
                "subtypes": rec.get("subtypes", []),
                "priority": rec.get("priority", 0),
                "weight": rec.get("weight", 0),
                "ipv6": any(":" in a for a in rec["addresses"]),
                "expect_refusal": sorted(a for a in na if (publisher, a) in REFUSAL),
            }
        )
    if publisher != "avahi":
        out.append(
            {"name": f"{DOT_PROBE} [{tag}]", "type": "_http._tcp", "port": 8081, "host": f"probe-{tag}",
             "txt": ["path=/"], "subtypes": [], "ipv6": False}
        )  # fmt: skip
    if publisher == "ciao":  # a second service on the probe's host (aspect "host")
        out.append(
            {"name": HOST_PROBE, "type": "_http._tcp", "port": 8082, "host": f"probe-{tag}", "txt": []}
        )
    return out


def raw(entries: list[str]) -> list[bytes]:
    """Corpus/tool TXT strings (``hex:`` for bytes) as bytes; the lone empty string is no TXT."""
    out = [bytes.fromhex(e[4:]) if e.startswith("hex:") else e.encode() for e in entries]
    return [] if out == [b""] else out


def addresses_of(rec: dict[str, Any], v4: str, v6: str) -> list[str]:
    return sorted([v4, *([v6] if any(":" in a for a in rec["addresses"]) else [])])


# --- clients -------------------------------------------------------------------------


def _run_bytes(
    tb: Testbed, host: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> bytes:
    import os

    r = subprocess.run(
        [*tb.node(host).prefix, *args],
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **env} if env else None,
        check=False,
    )
    return r.stdout


def _unescape(text: bytes) -> bytes:
    """avahi-browse -p's escapes (``\\DDD`` decimal, ``\\X``) back to bytes."""
    return re.sub(rb"\\(\d{3}|.)", lambda m: bytes([int(m[1])]) if m[1].isdigit() else m[1], text)


def avahi_all(tb: Testbed, host: str) -> dict[tuple[str, str], dict[str, Any]]:
    """``avahi-browse -arptk`` on `host`: (type, instance) -> host, port, txt (wire order), addresses."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    text = _run_bytes(tb, host, "avahi-browse", "-arptk", env=tb.avahis[host].env)
    for line in text.splitlines():
        f = line.split(b";")
        if f[0] != b"=" or len(f) < 10:
            continue
        name = _unescape(f[3]).decode("utf-8", "replace")
        txt = [_unescape(m) for m in re.findall(rb'"((?:[^"\\]|\\.)*)"', b";".join(f[9:]))]
        got = out.setdefault(
            (f[4].decode(), name),
            # avahi 0.8 lists TXT strings in reverse wire order.
            {"host": f[6].decode(), "port": int(f[8]), "txt": raw_list(txt[::-1]), "addresses": set()},
        )
        got["addresses"].add(f[7].decode())
    return out


def raw_list(items: list[bytes]) -> list[bytes]:
    return [] if items == [b""] else items


def avahi_subtypes(tb: Testbed, host: str) -> dict[tuple[str, str], list[str]]:
    """(type, instance) -> subtype labels avahi-browse lists it under."""
    out: dict[tuple[str, str], list[str]] = {}
    for sub in SUBTYPES:
        label, service_type = sub.split("._sub.")
        text = _run_bytes(tb, host, "avahi-browse", "-ptk", sub, env=tb.avahis[host].env)
        for line in text.splitlines():
            f = line.split(b";")
            if f[0] == b"+" and len(f) >= 6:
                name = _unescape(f[3]).decode("utf-8", "replace")
                subs = out.setdefault((service_type, name), [])
                if label not in subs:
                    subs.append(label)
    return {k: sorted(v) for k, v in out.items()}


def avahi_resolve(tb: Testbed, host: str, names: list[str]) -> dict[str, set[str]]:
    """``avahi-resolve -n -4`` and ``-6`` of `names` on `host`: name -> addresses."""
    out: dict[str, set[str]] = {}
    if not names:
        return out
    for family in ("-4", "-6"):
        text = _run_bytes(tb, host, "avahi-resolve", "-n", family, *names, env=tb.avahis[host].env)
        for line in text.decode("utf-8", "replace").splitlines():
            f = line.split("\t")
            if len(f) == 2:
                out.setdefault(f[0], set()).add(f[1].strip())
    return out


def instance_of(fqdn: str, service_type: str) -> str:
    suffix = f".{service_type}.local"
    name = fqdn.rstrip(".")
    return name[: -len(suffix)] if name.lower().endswith(suffix.lower()) else name


def node(tb: Testbed, host: str, *args: str, name: str) -> Proc:
    npm = Path(__file__).resolve().parents[1] / "tools" / "npm"
    return tb.spawn(host, ["node", str(npm / "browse.mjs"), *args], name=name, cwd=npm)


def seen(tb: Testbed, watch: Proc, client_address: str) -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    """client -> (type, instance) -> what it reported (fields it cannot read are absent)."""
    out: dict[str, dict[tuple[str, str], dict[str, Any]]] = {c: {} for c in CLIENTS}
    # bonjour-service first and alone: a responder aggregates answers to questions asked at the
    # same moment, and this Browser reads an instance only from a packet with its PTR and SRV.
    bonjour = node(tb, "b-client", "bonjour", client_address, "2", *TYPES, name="b-corpus-bonjour")
    bonjour.wait_event("done", timeout=40)
    mdns = node(tb, "b-client", "mdns", client_address, "4", *TYPES, *SUBTYPES, name="b-corpus-mdns")
    scan = tb.spawn(
        "b-client", ["timeout", "-s", "INT", "9", "stdbuf", "-oL", "mdns-scan"], name="b-corpus-mdns-scan"
    )
    out["avahi-browse"] = avahi_all(tb, "b-client")
    for k, subs in avahi_subtypes(tb, "b-client").items():
        if k in out["avahi-browse"]:
            out["avahi-browse"][k]["subtypes"] = subs
    # avahi-browse -r shows one address per line (its resolver takes the first of any family):
    # the host's addresses come from avahi-resolve, IPv4 and IPv6.
    hosts = sorted({got["host"] for got in out["avahi-browse"].values()})
    resolved = avahi_resolve(tb, "b-client", hosts)
    for got in out["avahi-browse"].values():
        got.setdefault("subtypes", [])
        got["addresses"] = sorted(resolved.get(got["host"], set()) | got["addresses"])
    mdns.wait_event("done", timeout=40)
    scan.wait(timeout=30)
    for e in bonjour.events():
        if e["event"] == "found":
            t = e["browsed"]
            out["bonjour-service"][(t, instance_of(e["fqdn"], t))] = {
                "port": e["port"],
                "txt": raw(e["txt"]),
                "host": e["host"],
                "addresses": sorted(e["addresses"]),
            }
    for e in mdns.events():
        if e["event"] == "found" and "._sub." not in e["browsed"]:
            t = e["browsed"]
            out["multicast-dns"][(t, instance_of(e["fqdn"], t))] = {
                "port": e["port"],
                "txt": raw(e["txt"] or []),
                "srv": [e["priority"], e["weight"]],
                "host": e["host"],
                "addresses": sorted(e["addresses"]),
                "subtypes": [],
            }
    for e in mdns.events():
        if e["event"] == "found" and "._sub." in e["browsed"]:
            label, t = e["browsed"].split("._sub.")
            got = out["multicast-dns"].get((t, instance_of(e["fqdn"], t)))
            if got is not None:
                got["subtypes"] = sorted({*got["subtypes"], label})
    stderr = scan.stderr()
    for t in TYPES:
        for full in re.findall(rf"\+ (.*?\.{re.escape(t)}\.local)\r?$", stderr, flags=re.MULTILINE):
            out["mdns-scan"][(t, instance_of(full, t))] = {}
    for e in watch.events():
        if e["event"] in ("up", "update"):
            t = e["type"].removesuffix(".local.")
            out["python-zeroconf"][(t, e["instance"])] = {
                "port": e["port"],
                "txt": raw_list([bytes.fromhex(h) for h in e["txt_raw"]]),
                "srv": [e["priority"], e["weight"]],
                "host": e["host"],
                "addresses": sorted(e["addresses"]),
            }
    return out


# --- dig against the unicast DNS-SD front end -----------------------------------------------


def presentation(label: bytes) -> str:
    """A label as dig prints it: ``.;\\()@$"`` after a backslash, bytes outside ! to ~ as ``\\DDD``."""
    out = []
    for byte in label:
        char = chr(byte)
        if char in '.;\\()@$"':
            out.append("\\" + char)
        elif 0x21 <= byte <= 0x7E:
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def txt_presentation(strings: list[bytes]) -> str:
    """TXT rdata as dig prints it: quoted strings, ``"`` and ``\\`` escaped,
    bytes outside space to ~ as ``\\DDD``."""
    out = []
    for s in strings or [b""]:
        chars = []
        for byte in s:
            if chr(byte) in '"\\':
                chars.append("\\" + chr(byte))
            elif 0x20 <= byte <= 0x7E:
                chars.append(chr(byte))
            else:
                chars.append(f"\\{byte:03d}")
        out.append('"' + "".join(chars) + '"')
    return " ".join(out)


def owner(instance: str, service_type: str) -> str:
    return f"{presentation(instance.encode())}.{service_type}.{DNS_DOMAIN}"


def dig_all(tb: Testbed, names: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """One ``dig -f`` batch on b-client: PTR of every type and subtype, SRV and TXT of every
    (type, instance) in `names`, A and AAAA of the SRV targets; parsed into what the other
    clients report (TXT compared in dig's presentation form)."""
    common = f"@{DNS_SERVER} -p 53 +noall +answer +time=2 +tries=2"
    lines = [f"{common} PTR {n}.{DNS_DOMAIN}" for n in (*TYPES, *SUBTYPES)]
    lines += [f"{common} {q} {owner(i, t)}" for t, i in names for q in ("SRV", "TXT")]
    batch = tb.workdir / "corpus-dig.txt"
    batch.write_text("\n".join(lines) + "\n")
    answers = _dig(tb, batch)
    targets = {rdata.split()[3] for _, rtype, rdata in answers if rtype == "SRV"}
    batch.write_text("".join(f"{common} {q} {t}\n" for t in sorted(targets) for q in ("A", "AAAA")))
    answers += _dig(tb, batch)
    ptrs = {(o, rdata) for o, rtype, rdata in answers if rtype == "PTR"}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for t, i in names:
        own = owner(i, t)
        if (f"{t}.{DNS_DOMAIN}", own) not in ptrs:
            continue
        srv = [r.split() for o, rtype, r in answers if o == own and rtype == "SRV"]
        txt = [r for o, rtype, r in answers if o == own and rtype == "TXT"]
        target = srv[0][3] if srv else ""
        out[(t, i)] = {
            "port": int(srv[0][2]) if srv else None,
            "srv": [int(srv[0][0]), int(srv[0][1])] if srv else None,
            "txt_presentation": txt[0] if txt else None,
            "host": target,
            "addresses": sorted(r for o, rtype, r in answers if o == target and rtype in ("A", "AAAA")),
            "subtypes": sorted(
                sub.split("._sub.")[0] for sub in SUBTYPES if (f"{sub}.{DNS_DOMAIN}", own) in ptrs
            ),
        }
    return out


def _dig(tb: Testbed, batch: Path) -> list[tuple[str, str, str]]:
    r = tb.node("b-client").run("dig", "-f", str(batch), check=False, timeout=120)
    out = []
    for line in r.stdout.splitlines():
        f = line.split(None, 4)
        if len(f) == 5 and not line.startswith(";"):
            out.append((f[0], f[3], f[4]))
    return out


# --- verdicts ---------------------------------------------------------------------------


def expected(
    publisher: str,
    rec: dict[str, Any],
    backend: str,
    client: str,
    txt_on_a: list[bytes] | None,
    v4: str,
    v6: str,
) -> dict[str, Any]:
    """What `client` on B must report of `publisher`'s copy of `rec` (fields it reads)."""
    na = NOT_APPLICABLE.get((publisher, key(rec)), {})
    srv = [rec.get("priority", 0), rec.get("weight", 0)]
    if "srv" in na or (backend == "avahi" and client != "dig"):
        srv = [0, 0]  # the stack's API, or the Avahi backend's AddService, has no priority/weight
    txt = raw(rec["txt"]) if "txt" not in na else (txt_on_a or [])
    proxy_host = f"{published_host(publisher, rec)}-{SITE_A}-z2z"
    return {
        "port": rec["port"],
        "txt": txt,
        "txt_presentation": txt_presentation(txt),
        "srv": srv,
        "subtypes": [] if "subtypes" in na else sorted(rec.get("subtypes", [])),
        "host": f"{proxy_host}.{DNS_DOMAIN}" if client == "dig" else f"{proxy_host}.local",
        "addresses": addresses_of(rec, v4, v6),
    }


# bonjour-service's Browser builds an instance from one packet only: the PTR, its SRV, and the
# TXT and A/AAAA that happen to be in that packet (it never asks for what is missing, though
# RFC 6763 §12 makes additional records optional).  When a type's answer spills into a second
# packet it misses instances, their TXT or some addresses: "incomplete", never "wrong".
# z2z's python-zeroconf backend packs each instance whole into one packet
# (z2z.adapters.link.packing); avahi-daemon, the Avahi backend's responder, does not.
INCOMPLETE_OK = "bonjour-service"


def verdict(want: dict[str, Any], got: dict[str, Any] | None, client: str = "") -> str:
    """``ok`` or the fields that differ (only the fields the client reported are compared);
    ``incomplete: ...`` when `client` is `INCOMPLETE_OK` and only missing parts differ."""
    if got is None:
        return "incomplete: not seen" if client == INCOMPLETE_OK else "not seen"
    missing = []
    if client == INCOMPLETE_OK:
        got = dict(got)
        if got["txt"] == [] and want["txt"] != []:
            missing.append("no TXT")
            del got["txt"]
        if set(got["addresses"]) < set(want["addresses"]):
            missing.append(f"addresses {got['addresses']} only" if got["addresses"] else "no addresses")
            del got["addresses"]
    wrong = []
    for field, value in got.items():
        if field == "txt" and "txt_presentation" in got:
            continue
        mine = want[field]
        if field == "host":
            value, mine = str(value).rstrip(".").lower(), str(mine).rstrip(".").lower()
        if value != mine:
            wrong.append(f"{field} {value!r} (want {mine!r})")
    if wrong:
        return "; ".join(wrong)
    return "ok" if not missing else "incomplete: " + ", ".join(missing)


# --- the test's steps -------------------------------------------------------------------------


def publish(tb: Testbed, v4: str, v6: str) -> dict[str, Proc]:
    """Every publisher starts publishing its copy of the corpus on a-printer (`check_on_a` waits)."""
    import sys

    npm = Path(__file__).resolve().parents[1] / "tools" / "npm"
    procs: dict[str, Proc] = {}
    for publisher in PUBLISHERS:
        services = spec(publisher)
        if publisher in ("avahi", "python-zeroconf"):
            path = tb.workdir / f"corpus-{PUBLISHERS[publisher]}.json"
            path.write_text(json.dumps(services))
            stack = "avahi" if publisher == "avahi" else "zeroconf"
            procs[publisher] = tb.spawn(
                "a-printer",
                [sys.executable, str(npm.parent / "corpus_publish.py"), "--stack", stack,
                 "--address", v4, "--address", v6, str(path)],
                name=f"a-corpus-{PUBLISHERS[publisher]}",
                env=tb.avahis["a-printer"].env if publisher == "avahi" else None,
            )  # fmt: skip
        else:
            procs[publisher] = tb.spawn(
                "a-printer",
                ["node", str(npm / "publish.mjs"), PUBLISHERS[publisher], v4, json.dumps(services)],
                name=f"a-corpus-{PUBLISHERS[publisher]}",
                cwd=npm,
            )
    return procs


def check_on_a(tb: Testbed, procs: dict[str, Proc], v4: str) -> dict[tuple[str, str], list[bytes]]:
    """Each not-applicable entry still holds, judged on A without z2z; returns the TXT that
    avahi-browse on A shows for the ``txt`` entries (what B must then show)."""
    import time

    for proc in procs.values():
        proc.wait_event("ready", timeout=60)
    refused = {
        (publisher, e["name"], e.get("what", "")): e.get("error", "")
        for publisher, proc in procs.items()
        for e in proc.events()
        if e["event"] == "refused"
    }
    wanted = set()
    for publisher in PUBLISHERS:
        for rec in CORPUS:
            for aspect in NOT_APPLICABLE.get((publisher, key(rec)), {}):
                if (publisher, aspect) in REFUSAL:
                    name = published_name(publisher, rec)
                    what = aspect if publisher == "python-zeroconf" else ""
                    error = refused.get((publisher, name, what))
                    assert error is not None and re.search(REFUSAL[publisher, aspect], error), (
                        f"{publisher} published {name} ({aspect}): {error!r}: shrink NOT_APPLICABLE"
                    )
                    wanted.add((publisher, name, what))
    extra = {k: v for k, v in refused.items() if k not in wanted and not (k[0] == "avahi" and k[2] == "srv")}
    assert not extra, f"refused beyond NOT_APPLICABLE: {extra}"

    deadline = time.monotonic() + 30
    while True:
        on_a = avahi_all(tb, "a-printer")
        want = {(r["type"], published_name(p, r)) for p in PUBLISHERS for r in CORPUS
                if "port0" not in NOT_APPLICABLE.get((p, key(r)), {})}  # fmt: skip
        if want <= set(on_a) or time.monotonic() > deadline:
            break
        time.sleep(1)
    renamed = [e for proc in procs.values() for e in proc.events() if e["event"] in ("renamed", "error")]
    assert want <= set(on_a), f"not on A: {sorted(want - set(on_a))}; {renamed}"
    # A dotted name from a stack that cannot write one is not listed under that name.
    for publisher, tag in PUBLISHERS.items():
        if publisher == "avahi":
            continue
        probe = f"{DOT_PROBE} [{tag}]"
        assert ("_http._tcp", probe) not in on_a, f"{publisher} now writes {probe!r} in one label"
        if publisher == "bonjour-service":
            assert ("_http._tcp", probe.replace(".", "-")) in on_a, sorted(on_a)
    renames = {e["from"]: e["name"] for e in procs["ciao"].events() if e["event"] == "renamed"}
    assert renames.get(HOST_PROBE) == f"{HOST_PROBE} (2)", f"ciao now shares a host name: {renames}"
    assert set(renames) == {HOST_PROBE}, renames
    txt_on_a: dict[tuple[str, str], list[bytes]] = {}
    srv_pairs = []
    for (publisher, rk), na in NOT_APPLICABLE.items():
        rec = RECORDS[rk]
        name = published_name(publisher, rec)
        if "txt" in na:
            got = on_a[(rec["type"], name)]["txt"]
            assert got != raw(rec["txt"]), f"{publisher} now publishes {rk}'s TXT as it is"
            txt_on_a[(publisher, rk)] = got
        if "srv" in na:
            srv_pairs.append((rec["type"], name))
    if srv_pairs:
        mdns = node(
            tb, "a-printer", "mdns", v4, "3", *sorted({t for t, _ in srv_pairs}), name="a-corpus-mdns"
        )
        mdns.wait_event("done", timeout=40)
        srv = {
            (e["browsed"], instance_of(e["fqdn"], e["browsed"])): [e["priority"], e["weight"]]
            for e in mdns.events()
            if e["event"] == "found"
        }
        for pair in srv_pairs:
            assert srv.get(pair) == [0, 0], (pair, srv.get(pair), "the stack now writes SRV priority/weight")
    return txt_on_a


def published_cells() -> list[tuple[str, dict[str, Any]]]:
    """(publisher, record) pairs that are on A's link (all but the refused ones)."""
    return [(p, r) for p in PUBLISHERS for r in CORPUS if "port0" not in NOT_APPLICABLE.get((p, key(r)), {})]


def judge(
    tb: Testbed,
    watch: Proc,
    backend: str,
    client_address: str,
    txt_on_a: dict[tuple[str, str], list[bytes]],
    v4: str,
    v6: str,
) -> tuple[dict[tuple[str, str, str], str], dict[str, Any]]:
    """(publisher, record key, client) -> verdict, and what the clients reported."""
    cells = published_cells()
    got = seen(tb, watch, client_address)
    got["dig"] = dig_all(tb, [(r["type"], published_name(p, r)) for p, r in cells])
    table = {}
    for publisher, rec in cells:
        pair = (rec["type"], published_name(publisher, rec))
        for client in CLIENTS:
            want = expected(publisher, rec, backend, client, txt_on_a.get((publisher, key(rec))), v4, v6)
            table[publisher, key(rec), client] = verdict(want, got[client].get(pair), client)
    return table, got


def markdown(tables: dict[str, dict[tuple[str, str, str], str]]) -> str:
    """The matrix for docs/interop.md: per backend, publisher x client, records seen identically."""
    lines = []
    for backend, table in tables.items():
        lines += [f"Gateways' link backend: **{backend}**", "",
                  "| publisher on A ↓ / client on B → | " + " | ".join(CLIENTS) + " |",
                  "|---" * (len(CLIENTS) + 1) + "|"]  # fmt: skip
        for publisher in PUBLISHERS:
            row = []
            for client in CLIENTS:
                ok = [rk for (p, rk, c), v in table.items() if p == publisher and c == client and v == "ok"]
                adapted = sum((publisher, rk) in NOT_APPLICABLE for rk in ok)
                partial = sum(
                    v.startswith("incomplete")
                    for (p, _, c), v in table.items()
                    if p == publisher and c == client
                )
                row.append(
                    f"{len(ok) - adapted}/{len(CORPUS)}"
                    + (f" + {adapted} n/a" if adapted else "")
                    + (f" + {partial} incomplete" if partial else "")
                )
            lines.append(f"| {publisher} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def not_applicable_markdown() -> str:
    """`NOT_APPLICABLE` as the docs/interop.md table (publisher, record, aspect, reason)."""
    lines = ["| publisher | record | aspect | why (checked on A) |", "|---|---|---|---|"]
    order = list(PUBLISHERS)
    for (publisher, rk), aspects in sorted(NOT_APPLICABLE.items(), key=lambda kv: order.index(kv[0][0])):
        for aspect, reason in aspects.items():
            lines.append(f"| {publisher} | `{rk}` | {aspect} | {publisher} {reason} |")
    return "\n".join(lines)


def failures(
    table: dict[tuple[str, str, str], str], incomplete_ok: bool = False
) -> dict[tuple[str, str, str], str]:
    """Cells that fail: not ``ok``.  With `incomplete_ok` (the Avahi backend, whose answers
    avahi-daemon packs), an incomplete `INCOMPLETE_OK` cell passes when avahi-browse and
    multicast-dns saw its instance identically (z2z published it right), and every type must
    have at least one instance that `INCOMPLETE_OK` lists completely (its browsing works).
    The python-zeroconf backend packs answers by instance, so there every cell must be ok."""
    bad = {}
    for (publisher, rk, client), v in table.items():
        if v == "ok":
            continue
        seen_right = all(table[publisher, rk, other] == "ok" for other in ("avahi-browse", "multicast-dns"))
        if incomplete_ok and client == INCOMPLETE_OK and v.startswith("incomplete") and seen_right:
            continue
        bad[publisher, rk, client] = v
    for service_type in TYPES:
        cells = [
            v for (_, rk, c), v in table.items() if c == INCOMPLETE_OK and RECORDS[rk]["type"] == service_type
        ]
        if "ok" not in cells:
            bad["*", service_type, INCOMPLETE_OK] = (
                f"no instance of {service_type} listed completely: {cells}"
            )
    return bad
