"""Private networks: sealing, signatures, trust, replay, address policy and quotas.

Most tests go through `Bridge` (the way values really arrive); the last ones
cover the key files (`z2z.app.keys`) and the CLI commands around them.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from z2z.core.bridge import Bridge, BridgeSettings, Publish, Put, Reject, TrustNews, Withdraw
from z2z.core.records import Service
from z2z.core.security import (
    MAGIC,
    OVERHEAD,
    Codec,
    ImportRules,
    SecurityError,
    SiteLimits,
    TrustPolicy,
    format_public_key,
    format_secret,
    parse_prefixes,
    parse_public_key,
    parse_secret,
    public_key_bytes,
)
from z2z.core.wire import envelope as protocol
from z2z.core.wire.gateways import LeaderRecord, WireError, leaders_key, open_record, seal_record

T = "_ipp._tcp"
NOW = 1_800_000_000.0
SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(1, 33))
PRINTER = Service(T, "Finance Printer", "printer", 631, (b"rp=ipp/print",), ("10.1.0.9",))


def site_key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def bridge(
    site: str,
    secret: bytes | None = SECRET,
    key: Ed25519PrivateKey | None = None,
    trust: TrustPolicy | None = None,
    **kw: object,
) -> Bridge:
    settings = BridgeSettings(site=site, network="z2z", node="0123456789abcdef", types=(T,), **kw)  # type: ignore[arg-type]
    codec = Codec("z2z", secret, key or site_key(sum(site.encode()) % 200 + 1))
    return Bridge(settings, codec=codec, trust=trust)


def puts(actions: list) -> list[Put]:
    return [a for a in actions if isinstance(a, Put)]


def deliver(actions: list, to: Bridge, now: float = NOW) -> list:
    out: list = []
    for p in puts(actions):
        out += to.remote_value(p.service_type, p.data, now)
    return out


def published(actions: list) -> list[Service]:
    return [a.service for a in actions if isinstance(a, Publish)]


def rejected(actions: list) -> list[str]:
    return [a.reason for a in actions if isinstance(a, Reject)]


# -- keys and the codec ------------------------------------------------------------


def test_public_mode_keeps_format_one_keys_ids_and_bytes() -> None:
    codec = Codec("z2z")
    assert codec.type_key(T) == protocol.type_key("z2z", T)
    assert codec.leaders_key() == leaders_key("z2z")
    assert codec.value_id("a", T, "P", 7) == protocol.value_id("a", T, "P", 7)
    body = b'{"z2z":1}'
    assert codec.seal(body, codec.type_key(T)) == body
    assert codec.open(body, codec.type_key(T)).body == body


def test_private_keys_are_hmac_derived_and_depend_on_the_secret() -> None:
    a, b = Codec("z2z", SECRET), Codec("z2z", OTHER_SECRET)
    assert len(a.type_key(T)) == len(a.leaders_key()) == 20
    assert a.type_key(T) != protocol.type_key("z2z", T)
    assert a.type_key(T) != b.type_key(T)
    assert a.leaders_key() != b.leaders_key() != leaders_key("z2z")
    assert Codec("other", SECRET).type_key(T) != a.type_key(T)
    assert a.value_id("a", T, "P", 7) != protocol.value_id("a", T, "P", 7)  # names not guessable
    assert a.type_key(T) == Codec("z2z", SECRET).type_key(T)  # every member agrees


def test_seal_open_verify_round_trip() -> None:
    key = site_key(1)
    codec = Codec("z2z", SECRET, key)
    k = codec.type_key(T)
    body = b'{"hello":"world"}'
    sealed = codec.seal(body, k)
    assert sealed.startswith(MAGIC) and len(sealed) == len(body) + OVERHEAD
    assert body not in sealed  # encrypted, not only signed
    opened = Codec("z2z", SECRET).open(sealed, k)  # a reader needs no signing key
    assert opened.body == body and opened.signer == public_key_bytes(key)
    assert Codec.verify(opened)
    assert codec.seal(body, k) != sealed  # fresh nonce every time


def test_wrong_secret_tampering_and_relocation_are_refused() -> None:
    codec = Codec("z2z", SECRET, site_key(1))
    k = codec.type_key(T)
    sealed = codec.seal(b"{}", k)
    with pytest.raises(SecurityError) as err:
        Codec("z2z", OTHER_SECRET).open(sealed, k)
    assert err.value.reason == "bad-seal"
    for i in (0, 4, 10, len(sealed) // 2, len(sealed) - 1):  # every byte is covered
        bad = bytearray(sealed)
        bad[i] ^= 0x01
        with pytest.raises(SecurityError) as err:
            codec.open(bytes(bad), k)
        assert err.value.reason in ("bad-seal", "not-sealed")
    with pytest.raises(SecurityError, match="bad-seal"):  # moved under another type's key
        codec.open(sealed, codec.type_key("_http._tcp"))
    with pytest.raises(SecurityError, match="bad-seal"):
        codec.open(sealed[:40], k)
    with pytest.raises(SecurityError, match="not-sealed"):
        codec.open(b'{"z2z":1}', k)
    with pytest.raises(SecurityError, match="sealed"):  # a public gateway sees noise
        Codec("z2z").open(sealed, k)
    with pytest.raises(SecurityError, match="too-large"):
        codec.open(MAGIC + bytes(9000), k)


def test_signature_from_another_key_does_not_verify() -> None:
    honest, forger = site_key(1), site_key(2)
    codec = Codec("z2z", SECRET, forger)
    k = codec.type_key(T)
    opened = codec.open(codec.seal(b"{}", k), k)
    forged = replace(opened, signer=public_key_bytes(honest))  # claim to be the honest site
    assert not Codec.verify(forged)
    assert not Codec.verify(replace(opened, body=b"{ }"))
    assert not Codec.verify(replace(opened, key=codec.type_key("_http._tcp")))
    assert not Codec.verify(replace(opened, signer=bytes(32)))


def test_secret_and_public_key_text_forms() -> None:
    assert parse_secret(format_secret(SECRET)) == SECRET
    for bad in (
        "",
        "z2z-secret-1:",
        "z2z-secret-1:!!!",
        "z2z-secret-1:" + "QUFB" * 3,
        "hello",
        format_secret(SECRET) + format_secret(OTHER_SECRET),
    ):
        with pytest.raises(SecurityError, match="bad-secret"):
            parse_secret(bad)
    raw = public_key_bytes(site_key(3))
    assert parse_public_key(format_public_key(raw)) == raw
    assert parse_public_key("ed25519:" + format_public_key(raw)) == raw
    for bad in ("", "abc", format_public_key(raw)[:-4]):
        with pytest.raises(SecurityError, match="bad-key"):
            parse_public_key(bad)


# -- through the bridge ------------------------------------------------------------


def test_same_secret_bridges_sealed_and_signed() -> None:
    a, b = bridge("campus-a", key=site_key(1)), bridge("campus-b")
    acts = a.local_up(PRINTER, NOW)
    [put] = puts(acts)
    assert put.key == Codec("z2z", SECRET).type_key(T) and put.data.startswith(MAGIC)
    out = deliver(acts, b)
    assert [svc.instance for svc in published(out)] == ["Finance Printer"]
    [news] = [x for x in out if isinstance(x, TrustNews)]
    assert (news.event.kind, news.event.site, news.event.key) == (
        "learned",
        "campus-a",
        public_key_bytes(site_key(1)),
    )
    # the tombstone is sealed too, and withdraws
    assert deliver(a.local_down(T, "Finance Printer", NOW + 1), b, NOW + 1) == [
        Withdraw(T, "Finance Printer", "campus-a")
    ]


def test_other_secret_or_no_secret_can_neither_read_nor_inject() -> None:
    a, b = bridge("campus-a"), bridge("campus-b")
    stranger, public = bridge("evil", secret=OTHER_SECRET), bridge("public", secret=None)
    # the stranger's value, even put under our key, is noise
    [put] = puts(stranger.local_up(PRINTER, NOW))
    assert rejected(b.remote_value(T, put.data, NOW)) == ["bad-seal"]
    [put] = puts(public.local_up(PRINTER, NOW))
    assert rejected(b.remote_value(T, put.data, NOW)) == ["not-sealed"]
    # ...and ours is noise to them
    [put] = puts(a.local_up(PRINTER, NOW))
    assert rejected(stranger.remote_value(T, put.data, NOW)) == ["bad-seal"]
    assert rejected(public.remote_value(T, put.data, NOW)) == ["sealed"]
    assert b.imports() == [] and stranger.imports() == [] and public.imports() == []
    assert b.stats.rejected == {"bad-seal": 1, "not-sealed": 1}


def test_tampered_value_is_counted_not_imported() -> None:
    a, b = bridge("campus-a"), bridge("campus-b")
    [put] = puts(a.local_up(PRINTER, NOW))
    bad = bytearray(put.data)
    bad[-20] ^= 0xFF
    assert rejected(b.remote_value(T, bytes(bad), NOW)) == ["bad-seal"]
    assert b.imports() == []


def test_member_forging_another_sites_signature_is_refused() -> None:
    """A rogue member knows the secret but not campus-a's signing key."""
    honest = site_key(1)
    a, b = bridge("campus-a", key=honest), bridge("campus-b")
    deliver(a.local_up(PRINTER, NOW), b)  # b learns campus-a's key
    rogue = Codec("z2z", SECRET, site_key(66))
    fake = replace(PRINTER, instance="Finance Printer 2", addresses=("10.1.0.66",))
    env = protocol.Envelope("z2z", "campus-a", "0123456789abcdef", 10**13, NOW, 120, False, fake)
    body = protocol.encode(env)
    k = rogue.type_key(T)
    # (1) signed with its own key, claiming campus-a: TOFU knows better
    out = b.remote_value(T, rogue.seal(body, k), NOW)
    assert rejected(out) == ["key-changed"]
    [news] = [x for x in out if isinstance(x, TrustNews)]
    assert news.event.kind == "changed" and news.event.known == public_key_bytes(honest)
    assert rejected(b.remote_value(T, rogue.seal(body, k), NOW)) == ["key-changed"]  # reported once:
    assert not [x for x in b.remote_value(T, rogue.seal(body, k), NOW) if isinstance(x, TrustNews)]
    # (2) honest key in the wrapper but its own signature: does not verify
    sealed = _seal_with_claimed_signer(rogue, body, k, public_key_bytes(honest))
    assert rejected(b.remote_value(T, sealed, NOW)) == ["bad-signature"]
    assert [svc.instance for _, svc in b.imports()] == ["Finance Printer"]


def _seal_with_claimed_signer(codec: Codec, body: bytes, k: bytes, claimed: bytes) -> bytes:
    """Seal `body` signed by `codec`'s key but naming `claimed` as the signer."""
    from z2z.core.security import KEY_BYTES, NONCE_BYTES

    sealed = codec.seal(body, k)
    opened = codec.open(sealed, k)
    aead = codec._aead
    assert aead is not None
    nonce = os.urandom(NONCE_BYTES)
    plain = claimed + opened.signature + body
    assert len(claimed) == KEY_BYTES
    return MAGIC + nonce + aead.encrypt(nonce, plain, MAGIC + k)


def test_tofu_accepts_first_key_and_persisted_keys_are_honoured() -> None:
    trust = TrustPolicy("tofu")
    v = trust.check("campus-a", b"A" * 32)
    assert v.accept and v.event is not None and v.event.kind == "learned"
    assert trust.check("campus-a", b"A" * 32).accept
    assert trust.check("campus-a", b"A" * 32).event is None  # learned once
    v = trust.check("campus-a", b"B" * 32)
    assert not v.accept and v.reason == "key-changed"
    # after a restart, the persisted key is what counts
    again = TrustPolicy("tofu", known=trust.known)
    assert not again.check("campus-a", b"B" * 32).accept
    # pinning overrides what was learned (the admin's way to accept a new key)
    pinned = TrustPolicy("tofu", pinned={"campus-a": b"B" * 32}, known=trust.known)
    assert pinned.check("campus-a", b"B" * 32).accept
    assert not pinned.check("campus-a", b"A" * 32).accept
    assert not trust.check("campus-x", None).accept  # unsigned never passes
    small = TrustPolicy("tofu", max_known=1)
    assert small.check("s1", b"1" * 32).accept
    assert small.check("s2", b"2" * 32).reason == "too-many-sites"


def test_explicit_trust_only_accepts_pinned_keys() -> None:
    ka, kc = site_key(1), site_key(3)
    trust = TrustPolicy("explicit", pinned={"campus-a": public_key_bytes(ka)})
    a, c = bridge("campus-a", key=ka), bridge("campus-c", key=kc)
    b = bridge("campus-b", trust=trust)
    out = deliver(a.local_up(PRINTER, NOW), b)
    assert published(out) and not [x for x in out if isinstance(x, TrustNews)]
    assert rejected(deliver(c.local_up(replace(PRINTER, instance="C"), NOW), b)) == ["untrusted-site"]
    impostor = bridge("campus-a", key=kc)
    assert rejected(deliver(impostor.local_up(replace(PRINTER, port=9), NOW + 1), b, NOW + 1)) == [
        "key-changed"
    ]
    assert b.stats.rejected == {"untrusted-site": 1, "key-changed": 1}


# -- replay and rollback of sealed values --------------------------------------------


def test_replayed_old_sealed_version_is_ignored() -> None:
    a, b = bridge("campus-a"), bridge("campus-b")
    v1 = puts(a.local_up(PRINTER, NOW))[0]
    v2 = puts(a.local_up(replace(PRINTER, port=632), NOW + 5))[0]
    assert published(b.remote_value(T, v1.data, NOW + 5))
    [svc] = published(b.remote_value(T, v2.data, NOW + 6))
    assert svc.port == 632
    # an attacker re-puts the captured, perfectly sealed and signed first version
    assert b.remote_value(T, v1.data, NOW + 7) == []
    assert b.remote_value(T, v2.data, NOW + 7) == []  # the same version again: no news either
    assert b.stats.rejected["old-seq"] == 2
    assert [s.port for _, s in b.imports()] == [632]


def test_replayed_tombstoned_service_does_not_come_back() -> None:
    a, b = bridge("campus-a"), bridge("campus-b")
    live = puts(a.local_up(PRINTER, NOW))[0]
    deliver([live], b)
    tomb = puts(a.local_down(T, PRINTER.instance, NOW + 1))[0]
    assert b.remote_value(T, tomb.data, NOW + 1) == [Withdraw(T, PRINTER.instance, "campus-a")]
    assert b.remote_value(T, live.data, NOW + 2) == []  # rollback refused
    # even after the tombstone expired, the replay is outside the skew window
    late = NOW + 120 + 30 + 5
    b.tick(late)
    assert b.remote_value(T, live.data, late) == [] and b.stats.rejected["stale"] == 1
    assert b.imports() == []


def test_sealed_value_outside_the_skew_window_is_refused() -> None:
    a, b = bridge("campus-a"), bridge("campus-b", max_skew=30.0)
    [put] = puts(a.local_up(PRINTER, NOW))
    assert b.remote_value(T, put.data, NOW + 120 + 31) == []  # replayed after its ttl + skew
    assert b.stats.rejected["stale"] == 1
    assert rejected(b.remote_value(T, put.data, NOW - 31)) == ["from-future"]  # or from ahead
    assert b.imports() == []


# -- address policy ------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "169.254.1.1",
        "fe80::1",
        "224.0.0.251",
        "ff02::fb",
        "0.0.0.0",
        "::",
        "10.9.9.2",
    ],  # the last one: the receiving gateway's own address
)
def test_default_address_policy_drops_whole_record(address: str) -> None:
    b = bridge("campus-b", rules=ImportRules(own_addresses=frozenset({"10.9.9.2"})))
    rogue = Codec("z2z", SECRET, site_key(5))
    svc = replace(PRINTER, addresses=("10.1.0.9", address))  # one good, one bad: not half-imported
    env = protocol.Envelope("z2z", "campus-a", "0123456789abcdef", 1, NOW, 120, False, svc)
    out = b.remote_value(T, rogue.seal(protocol.encode(env), rogue.type_key(T)), NOW)
    assert rejected(out) == ["address-policy"] and b.imports() == []


def test_per_site_prefixes() -> None:
    allow = parse_prefixes(["10.1.0.0/16", "2001:db8:1::/48"])
    rules = ImportRules(sites={"campus-a": SiteLimits(allow=allow)})
    b = bridge("campus-b", rules=rules)
    a, c = bridge("campus-a"), bridge("campus-c")
    ok = replace(PRINTER, addresses=("10.1.2.3", "2001:db8:1::9"))
    assert published(deliver(a.local_up(ok, NOW), b))
    out = deliver(a.local_up(replace(PRINTER, instance="Out", addresses=("10.1.2.3", "10.2.0.1")), NOW), b)
    assert rejected(out) == ["address-policy"]
    out = deliver(a.local_up(replace(PRINTER, instance="Out6", addresses=("2001:db8:2::1",)), NOW), b)
    assert rejected(out) == ["address-policy"]
    # a site without an allow list gets the default rule
    assert published(deliver(c.local_up(replace(PRINTER, addresses=("10.2.0.1",)), NOW), b))


def test_violating_update_keeps_the_good_version() -> None:
    rules = ImportRules(sites={"campus-a": SiteLimits(allow=parse_prefixes(["10.1.0.0/16"]))})
    a, b = bridge("campus-a"), bridge("campus-b", rules=rules)
    deliver(a.local_up(PRINTER, NOW), b)
    out = deliver(a.local_up(replace(PRINTER, addresses=("192.0.2.7",)), NOW + 1), b, NOW + 1)
    assert rejected(out) == ["address-policy"]
    assert [s.addresses for _, s in b.imports()] == [("10.1.0.9",)]


# -- quotas --------------------------------------------------------------------------


def test_service_quota_rejects_excess_and_keeps_what_was_imported() -> None:
    rules = ImportRules(default=SiteLimits(max_services=3))
    a, b = bridge("campus-a"), bridge("campus-b", rules=rules)
    outs = [deliver(a.local_up(replace(PRINTER, instance=f"P{i}"), NOW), b) for i in range(5)]
    assert [bool(published(o)) for o in outs] == [True, True, True, False, False]
    assert b.stats.rejected["quota-services"] == 2
    assert sorted(s.instance for _, s in b.imports()) == ["P0", "P1", "P2"]
    # updates of imported instances still pass; a withdrawal frees a slot
    assert published(deliver(a.local_up(replace(PRINTER, instance="P0", port=9), NOW + 1), b, NOW + 1))
    deliver(a.local_down(T, "P1", NOW + 2), b, NOW + 2)
    assert b.usage()["campus-a"][0] == 3  # the tombstone holds its slot until it expires
    b.tick(NOW + 2 + 120 + 31)
    assert "campus-a" not in b.usage() or b.usage()["campus-a"][0] < 3


def test_tombstones_give_way_to_live_services_without_letting_ghosts_back() -> None:
    rules = ImportRules(default=SiteLimits(max_services=20))
    a, b = bridge("campus-a"), bridge("campus-b", rules=rules)
    versions: dict[str, list[Put]] = {}
    t = NOW
    for i in range(500):  # a site whose services come and go: a new name every 0.2 s, 5 live
        t = NOW + i * 0.2
        name = f"Churn {i}"
        up = a.local_up(replace(PRINTER, instance=name), t)
        versions[name] = puts(up)
        assert published(deliver(up, b, t)), f"{name} refused: {b.stats.rejected}"
        if i >= 5:
            deliver(a.local_down(T, f"Churn {i - 5}", t), b, t)
    assert b.stats.rejected["quota-services"] == 0
    assert b.usage()["campus-a"][0] <= 20 and len(b.imports()) == 5
    # an old live version replayed after its tombstone left the quota for the graveyard
    ghost = b.remote_value(T, versions["Churn 7"][0].data, t)
    assert not published(ghost) and b.stats.rejected["old-seq"] >= 1
    # a tombstone for something never imported costs no slot at all
    c = bridge("campus-c")
    c.local_up(PRINTER, t)
    deliver(c.local_down(T, PRINTER.instance, t + 1), b, t + 1)
    assert "campus-c" not in b.usage()
    # once expired, buried versions are forgotten (up to 256 a tick: a tick is a second)
    assert len(b._graveyard) > 256
    for k in range(3):
        b.tick(t + 200 + k)
    assert len(b._graveyard) == 0


def test_byte_quota_counts_bodies_and_other_sites_are_unaffected() -> None:
    big_txt = tuple(bytes([65 + i]) * 200 for i in range(10))  # ~2.7 KiB per value
    rules = ImportRules(default=SiteLimits(max_bytes=8 * 1024))
    a, c, b = bridge("campus-a"), bridge("campus-c"), bridge("campus-b", rules=rules)
    got = [
        bool(published(deliver(a.local_up(replace(PRINTER, instance=f"Big{i}", txt=big_txt), NOW), b)))
        for i in range(4)
    ]
    assert got == [True, True, False, False]
    assert b.stats.rejected["quota-bytes"] == 2
    entries, used = b.usage()["campus-a"]
    assert entries == 2 and used <= 8 * 1024
    # growing an existing import beyond the quota is refused; the old version stays
    huge = tuple(bytes([97 + i]) * 250 for i in range(15))
    grown = a.local_up(replace(PRINTER, instance="Big0", txt=huge), NOW + 1)
    assert rejected(deliver(grown, b, NOW + 1)) == ["quota-bytes"]
    assert {s.txt for _, s in b.imports()} == {big_txt}
    assert published(deliver(c.local_up(PRINTER, NOW), b))  # another site has its own quota


def test_site_count_quota_and_flood_does_not_crash() -> None:
    rules = ImportRules(default=SiteLimits(max_services=10), max_sites=3)
    b = bridge("campus-b", rules=rules)
    for i in range(6):
        deliver(bridge(f"site{i}").local_up(PRINTER, NOW), b)
    assert len(b.usage()) == 3 and b.stats.rejected["quota-sites"] == 3
    flood = bridge("flood")
    for i in range(200):  # far beyond the cap: counted, never stored
        deliver(flood.local_up(replace(PRINTER, instance=f"F{i}"), NOW), b)
    assert "flood" not in b.usage()


def test_public_mode_applies_policy_and_quotas_too() -> None:
    rules = ImportRules(default=SiteLimits(max_services=1))
    a, b = bridge("campus-a", secret=None), bridge("campus-b", secret=None, rules=rules)
    assert published(deliver(a.local_up(PRINTER, NOW), b))
    assert rejected(deliver(a.local_up(replace(PRINTER, instance="Two"), NOW), b)) == ["quota-services"]


# -- leader records --------------------------------------------------------------------


def test_leader_records_are_sealed_and_signed_in_private_networks() -> None:
    rec = LeaderRecord("z2z", "campus-a", "0123456789abcdef", "10.1.0.2:4222", "", 1, NOW, 120)
    codec = Codec("z2z", SECRET, site_key(1))
    data = seal_record(rec, codec)
    assert data.startswith(MAGIC)
    got, signer = open_record(data, Codec("z2z", SECRET))
    assert got == rec and signer == public_key_bytes(site_key(1))
    with pytest.raises(WireError, match="bad-seal"):
        open_record(data, Codec("z2z", OTHER_SECRET))
    bad = bytearray(data)
    bad[30] ^= 1
    with pytest.raises(WireError):
        open_record(bytes(bad), Codec("z2z", SECRET))
    # public mode: the format-1 JSON, unsigned
    plain = seal_record(rec, Codec("z2z"))
    assert plain.startswith(b"{") and open_record(plain, Codec("z2z")) == (rec, None)
    with pytest.raises(WireError, match="not-sealed"):
        open_record(plain, Codec("z2z", SECRET))


def test_forged_leader_record_signature_is_refused() -> None:
    rec = LeaderRecord("z2z", "campus-a", "0123456789abcdef", "10.1.0.2:4222", "", 1, NOW, 120)
    rogue = Codec("z2z", SECRET, site_key(9))
    k = rogue.leaders_key()
    from z2z.core.wire.gateways import encode_record

    data = _seal_with_claimed_signer(rogue, encode_record(rec), k, public_key_bytes(site_key(1)))
    with pytest.raises(WireError, match="bad-signature"):
        open_record(data, Codec("z2z", SECRET))


# -- key files -------------------------------------------------------------------------


def test_link_announcements_carry_proof_of_membership() -> None:
    from z2z.core.wire.gateways import Announcement, State, check_txt, from_txt, sign_txt, to_txt

    ann = Announcement(
        "z2z", "campus-a", "0123456789abcdef", 5, State.LEADER, 1, 2, leader="0123456789abcdef"
    )
    member, stranger, public = Codec("z2z", SECRET), Codec("z2z", OTHER_SECRET), Codec("z2z")
    txt = sign_txt(to_txt(ann), member)
    assert "auth" in txt and from_txt(txt) == ann
    on_the_wire = {k: v.encode() for k, v in txt.items()}  # as leadership.txt_dict hands it over
    check_txt(on_the_wire, member)
    for codec, bad in (
        (stranger, txt),
        (member, to_txt(ann)),
        (member, {**txt, "rank": "99"}),
        (member, sign_txt(to_txt(ann), stranger)),
    ):
        with pytest.raises(WireError, match="auth"):
            check_txt(bad, codec)
    assert sign_txt(to_txt(ann), public) == to_txt(ann)  # public mode: format unchanged
    check_txt(to_txt(ann), public)
