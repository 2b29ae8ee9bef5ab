"""Private networks at the app layer: key files on disk, the CLI's key commands, the trust and
allow settings, and gateways (over the in-memory adapters) that seal, verify and refuse.

The pure codec, trust policy and import rules are tested in tests/unit/core/test_security.py.
"""

from __future__ import annotations

import asyncio
import json
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from z2z.app import keys
from z2z.core.records import Service
from z2z.core.security import MAGIC, Codec, format_public_key, parse_public_key, public_key_bytes
from z2z.core.wire import envelope as protocol

T = "_ipp._tcp"
NOW = 1_800_000_000.0
PRINTER = Service(T, "Finance Printer", "printer", 631, (b"rp=ipp/print",), ("10.1.0.9",))


def site_key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secret_file_round_trip_mode_and_no_overwrite(tmp_path: Path) -> None:
    f = tmp_path / "net.secret"
    keys.new_secret(f)
    assert mode(f) == 0o600
    secret = keys.read_secret(f)
    assert len(secret) == 32
    with pytest.raises(keys.KeyFileError, match="--force"):
        keys.new_secret(f)
    keys.new_secret(f, force=True)
    assert keys.read_secret(f) != secret


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "does not exist"),
        (b"", "bad-secret"),
        (b"\xff\xfe", "not text"),
        (b"z2z-secret-1:AAAA\n", "bytes instead of 32"),
    ],
)
def test_bad_secret_files_one_line(tmp_path: Path, content: bytes | None, needle: str) -> None:
    f = tmp_path / "s"
    if content is not None:
        f.write_bytes(content)
    with pytest.raises(keys.KeyFileError) as err:
        keys.read_secret(f)
    assert needle in str(err.value) and "\n" not in str(err.value) and str(f) in str(err.value)


def test_signing_key_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = keys.site_key_path(tmp_path / "state")
    k1 = keys.load_signing_key(path)
    assert mode(path) == 0o600
    assert public_key_bytes(keys.load_signing_key(path)) == public_key_bytes(k1)
    path.write_text("garbage")
    with pytest.raises(keys.KeyFileError, match="not a PEM private key"):
        keys.load_signing_key(path)


def test_known_sites_persist_and_bad_files_are_survived(tmp_path: Path) -> None:
    raw = public_key_bytes(site_key(4))
    keys.save_known_sites(tmp_path, {"campus-a": raw})
    assert mode(tmp_path / keys.KNOWN_SITES_FILE) == 0o600
    assert keys.load_known_sites(tmp_path) == {"campus-a": raw}
    doc = {"campus-a": "nope", "b": format_public_key(raw)}
    (tmp_path / keys.KNOWN_SITES_FILE).write_text(json.dumps(doc))
    assert keys.load_known_sites(tmp_path) == {"b": raw}
    (tmp_path / keys.KNOWN_SITES_FILE).write_text("[1, 2")
    assert keys.load_known_sites(tmp_path) == {}
    assert keys.load_known_sites(tmp_path / "nowhere") == {}


# -- the gateway (in-memory link and DHT) and the command line ----------------------------


async def test_gateways_with_the_secret_bridge_and_the_stranger_is_shut_out(tmp_path: Path) -> None:
    from support.helpers import until

    from z2z.adapters.link.memory import MemoryLink
    from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
    from z2z.app.config import build
    from z2z.app.gateway import Gateway

    good, other = tmp_path / "good.secret", tmp_path / "other.secret"
    keys.new_secret(good)
    keys.new_secret(other)
    dht = MemoryDht()
    gws = {}
    for site, secret in (("campus-a", good), ("campus-b", good), ("campus-c", other)):
        cfg = build(
            {},
            {
                "site": site,
                "type": (T,),
                "state-dir": str(tmp_path / site),
                "election": False,
                "network-secret": str(secret),
            },
        )
        gws[site] = Gateway(cfg, MemoryLink(), MemoryRendezvous(dht))
        await gws[site].start()
    a, b, c = gws["campus-a"], gws["campus-b"], gws["campus-c"]
    a.service_up(PRINTER)
    c.service_up(replace(PRINTER, instance="Evil Printer", addresses=("10.3.0.66",)))
    await until(lambda: (T, "Finance Printer") in b.link.published)
    await asyncio.sleep(0.05)
    assert (T, "Evil Printer") not in b.link.published and not c.link.published
    # every stored value is sealed; nothing is under the public key
    assert all(v.startswith(MAGIC) for vals in dht.values.values() for v in vals.values())
    assert protocol.type_key("z2z", T) not in dht.values
    # the stranger's values, copied under the network's key, are counted and dropped
    for vid, data in list(dht.values[c.bridge.key_for(T)].items()):
        await MemoryRendezvous(dht).put(b.bridge.key_for(T), vid, data)
    assert b.bridge.stats.rejected["bad-seal"] >= 1
    assert (T, "Evil Printer") not in b.link.published
    # b learned a's key and persisted it; status shows b's own key for other sites to pin
    known = keys.load_known_sites(tmp_path / "campus-b")
    assert known == {"campus-a": a.codec.public_key}
    st = b.status().as_json()
    assert st["private"] and st["site_key"] == format_public_key(b.codec.public_key or b"")
    for gw in gws.values():
        await gw.stop()


def run_cli(*argv: str) -> tuple[int, str, str]:
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "z2z", *argv], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def test_cli_keygen_show_key_and_bad_secret(tmp_path: Path) -> None:
    f = tmp_path / "net.secret"
    rc, out, err = run_cli("keygen", "--out", str(f))
    assert rc == 0 and mode(f) == 0o600 and len(keys.read_secret(f)) == 32
    rc, out, err = run_cli("keygen", "--out", str(f))
    assert rc == 2 and err.count("\n") == 1 and "--force" in err
    assert run_cli("keygen", "--out", str(f), "--force")[0] == 0
    state = tmp_path / "state"
    rc, out, err = run_cli("show-key", "--state-dir", str(state))
    assert rc == 0 and parse_public_key(out.strip())
    assert run_cli("show-key", "--state-dir", str(state))[1] == out  # the same key every time
    assert mode(state / keys.SITE_KEY_FILE) == 0o600
    bad = tmp_path / "bad.secret"
    bad.write_text("hello\n")
    for secret, needle in ((tmp_path / "missing", "does not exist"), (bad, "bad-secret")):
        rc, out, err = run_cli(
            "run", "--site", "x", "--state-dir", str(state), "--network-secret", str(secret)
        )
        assert rc == 2 and err.count("\n") == 1 and needle in err and "Traceback" not in err
    # signed values exist only in a private network: explicit trust in the open mode is refused
    rc, out, err = run_cli("run", "--site", "x", "--state-dir", str(state), "--trust", "explicit", "--public")
    assert rc == 2 and "public" in err and err.count("\n") == 1


def test_trust_and_allow_config_keys(tmp_path: Path) -> None:
    from z2z.app.config import ConfigError, build, check_settings, load_file

    raw = format_public_key(public_key_bytes(site_key(1)))
    cfg_file = tmp_path / "z2z.toml"
    cfg_file.write_text(
        f'site = "campus-b"\nnetwork-secret = "/etc/z2z/net.secret"\ntrust = "explicit"\n'
        f'trusted-sites = {{ campus-a = "{raw}", campus-c = ["{raw}"] }}\n'
        'site-allow = { campus-a = ["10.1.0.0/16", "2001:db8:1::/48"], "*" = "10.0.0.0/8" }\n'
        "max-services-per-site = 100\n"
    )
    cfg = build(load_file(cfg_file), check_settings({"trusted-sites": [f"campus-d={raw}"]}))
    assert cfg.trust == "explicit" and cfg.trusted_sites == {"campus-d": (raw,)}  # flags win
    rules = build(load_file(cfg_file), {}).import_rules(frozenset({"10.2.0.1"}))
    assert rules.limits("campus-a").max_services == 100
    assert rules.address_violation("campus-a", ["10.1.9.9", "2001:db8:1::1"]) is None
    assert rules.address_violation("campus-a", ["10.2.0.9"]) is not None
    assert rules.address_violation("campus-z", ["10.9.9.9"]) is None  # "*"
    assert rules.address_violation("campus-z", ["192.0.2.1"]) is not None
    assert rules.address_violation("campus-z", ["10.2.0.1"]) is not None  # our own
    flags = check_settings({"site-allow": ["campus-a=10.1.0.0/16,10.3.0.0/16", "campus-a=10.4.0.0/16"]})
    assert flags["site-allow"] == {"campus-a": ("10.1.0.0/16", "10.3.0.0/16", "10.4.0.0/16")}
    for bad in (
        {"trust": "maybe"},
        {"trusted-sites": ["campus-a"]},
        {"trusted-sites": {"bad site": raw}},
        {"trusted-sites": {"campus-a": "abc"}},
        {"site-allow": {"campus-a": ["10.1.0.0/33"]}},
        {"site-allow": {"campus-a": 5}},
        {"max-services-per-site": 0},
    ):
        with pytest.raises(ConfigError):
            check_settings(bad)
    with pytest.raises(ConfigError, match="explicit imports nothing"):
        build({}, {"site": "x", "network-secret": "f", "trust": "explicit"})


def test_gateway_trust_for_leader_records(tmp_path: Path) -> None:
    from z2z.adapters.link.memory import MemoryLink
    from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
    from z2z.app.config import build
    from z2z.app.gateway import Gateway

    secret = tmp_path / "s"
    keys.new_secret(secret)
    state = tmp_path / "state"
    state.mkdir()
    keys.save_known_sites(state, {"campus-b": public_key_bytes(site_key(9))})  # a stale entry for us
    cfg = build(
        {},
        {
            "site": "campus-b",
            "type": (T,),
            "state-dir": str(state),
            "election": False,
            "network-secret": str(secret),
        },
    )
    gw = Gateway(cfg, MemoryLink(), MemoryRendezvous(MemoryDht()))
    ka, kx = public_key_bytes(site_key(1)), public_key_bytes(site_key(2))
    assert gw.bridging.trust_site("campus-a", ka) is None  # learned on first use, and persisted
    assert keys.load_known_sites(state)["campus-a"] == ka
    assert gw.bridging.trust_site("campus-a", kx) == "key-changed"
    assert gw.bridging.trust_site("campus-b", gw.codec.public_key) is None  # our own records, always
    assert gw.bridging.trust_site("campus-a", None) is None  # (public records carry no signer)


async def test_type_index_entries_go_through_the_trust_policy(tmp_path: Path) -> None:
    from z2z.adapters.link.memory import MemoryLink
    from z2z.adapters.rendezvous.memory import MemoryDht, MemoryRendezvous
    from z2z.app.config import build
    from z2z.app.gateway import Gateway
    from z2z.core import typeindex

    secret = tmp_path / "s"
    keys.new_secret(secret)
    cfg = build(
        {},
        {
            "site": "campus-b",
            "type": (T,),
            "state-dir": str(tmp_path / "b"),
            "election": False,
            "network-secret": str(secret),
        },
    )
    gw = Gateway(cfg, MemoryLink(), MemoryRendezvous(MemoryDht()))
    raw = keys.read_secret(secret)
    honest, rogue = Codec("z2z", raw, site_key(1)), Codec("z2z", raw, site_key(2))
    key = gw.bridge.key_for(typeindex.INDEX_TYPE)

    def entry(codec: Codec, ts: float) -> bytes:
        body = typeindex.encode(typeindex.SiteTypes("z2z", "campus-a", ts, 120, (T,)))
        return codec.seal(body, key)

    gw.bridging.remote_value(typeindex.INDEX_TYPE, entry(honest, NOW), NOW)  # learns campus-a's key
    assert gw.bridge.stats.rejected["bad-type-index"] == 0
    gw.bridging.remote_value(typeindex.INDEX_TYPE, entry(rogue, NOW + 1), NOW + 1)  # claims campus-a
    assert gw.bridge.stats.rejected["bad-type-index"] == 1
