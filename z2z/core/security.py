"""Private, authenticated networks: derived DHT keys, sealed and signed values, trust, limits.

Pure, like the rest of the core: bytes and keys in, bytes and decisions out; no
file, socket or clock (loading keys from disk is `z2z.app.keys`).  Specified in
docs/protocol.md ("Private networks") and docs/security.md.

- `Codec` turns a value body (a format-1 envelope, or a leader record) into what
  is stored in the DHT and back.  Without a network secret it is the identity and
  the DHT keys are the public SHA-1 ones.  With a secret, DHT keys and value ids
  are HMAC-SHA256 of HKDF-derived subkeys (outsiders can neither find nor guess
  them), and every value is ``MAGIC | nonce | ChaCha20-Poly1305(signer | signature | body)``
  with the DHT key as associated data; the signature is the origin site's Ed25519
  signature over the DHT key and the body.
- `TrustPolicy` decides which site keys are accepted: keys pinned in the config,
  and (mode ``tofu``) the first key seen for any other site name.  It returns
  decisions and `KeyEvent`s; the runtime logs and persists them.
- `ImportRules` holds the address policy and the per-site quotas that the bridge
  applies to every import.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from z2z.core.errors import Z2zError
from z2z.core.wire.envelope import valid_site

SECRET_BYTES = 32
SECRET_PREFIX = "z2z-secret-1:"
NETWORK_PREFIX = "z2z-network:"  # optional second line of a secret file (written by z2z join)
MAGIC = b"Z2Z\x02"  # a sealed value; format-1 JSON values start with "{"
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
SIG_BYTES = 64
MAX_BODY_BYTES = 8192  # protocol.MAX_VALUE_BYTES: the biggest envelope or leader record
OVERHEAD = len(MAGIC) + NONCE_BYTES + KEY_BYTES + SIG_BYTES + TAG_BYTES  # 128 bytes
MAX_SEALED_BYTES = MAX_BODY_BYTES + OVERHEAD
_SIG_CONTEXT = b"z2z/v2/sig\0"

# Sized for big campuses: one site exports 1,000 services (twice that fits, tombstones
# count too) and a gateway imports 5,000 from 20 sites (docs/performance.md, bench/scale.py).
DEFAULT_MAX_SERVICES = 2048
DEFAULT_MAX_BYTES = 4 * 1024 * 1024  # 2 KiB a service; a typical value body is < 1 KiB
DEFAULT_MAX_SITES = 256
DEFAULT_MAX_IMPORTS = 10_000  # services (and tombstones) imported from all sites together
DEFAULT_MAX_KNOWN_SITES = 1024
TRUST_MODES = ("tofu", "explicit")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SecurityError(Z2zError, ValueError):
    """A value or key that is refused; `reason` is a short counter name (see docs/security.md)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason, reason)


# ---------------------------------------------------------------------------
# the network secret and site keys as text


def format_secret(secret: bytes, network: str | None = None) -> str:
    """The secret file's content: a comment, ``z2z-secret-1:<base64>`` and maybe the network name.

    The network name (``z2z-network:<name>``) is written by `z2z join`: the DHT keys
    are derived from the secret *and* the name, so a member needs both, and one file
    keeps them together (one atomic write; one systemd credential).
    """
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"a network secret is {SECRET_BYTES} bytes")
    text = (
        "# z2z network secret: give the same file to every gateway of the network, to no one else\n"
        f"{SECRET_PREFIX}{base64.b64encode(secret).decode('ascii')}\n"
    )
    return text + (f"{NETWORK_PREFIX}{network}\n" if network else "")


def parse_secret_file(text: str) -> tuple[bytes, str | None]:
    """The secret and the network name (None if the file has none) of a secret file's text."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    names = [ln[len(NETWORK_PREFIX) :].strip() for ln in lines if ln.startswith(NETWORK_PREFIX)]
    lines = [ln for ln in lines if not ln.startswith(NETWORK_PREFIX)]
    if len(lines) != 1 or not lines[0].startswith(SECRET_PREFIX) or len(names) > 1:
        raise SecurityError("bad-secret", f"expected one line '{SECRET_PREFIX}<base64>' (see z2z keygen)")
    try:
        secret = base64.b64decode(lines[0][len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise SecurityError("bad-secret", "not base64") from None
    if len(secret) != SECRET_BYTES:
        raise SecurityError("bad-secret", f"{len(secret)} bytes instead of {SECRET_BYTES}")
    network = names[0] if names else None
    if network is not None and not valid_site(network):
        raise SecurityError("bad-secret", f"{NETWORK_PREFIX} {network[:64]!r} is not a valid network name")
    return secret, network


def parse_secret(text: str) -> bytes:
    """The 32 secret bytes of a secret file's text; SecurityError('bad-secret') if it is not one."""
    return parse_secret_file(text)[0]


def network_fingerprint(secret: bytes, network: str) -> str:
    """A short id of a private network (8 characters) that admins can compare on both sides.

    Derived one-way (HKDF) from the secret and the name: it names the network in
    logs and `z2z invite` / `z2z join` output without revealing anything of the secret.
    """
    return base64.b32encode(_hkdf(secret, "fingerprint", network)[:5]).decode("ascii").lower()


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def format_public_key(raw: bytes) -> str:
    """How a site key is shown (`z2z show-key`) and pinned (`trusted-sites`): base64 of 32 bytes."""
    return base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str) -> bytes:
    """32 raw Ed25519 public key bytes from base64 (an ``ed25519:`` prefix is allowed)."""
    if not isinstance(text, str):
        raise SecurityError("bad-key", "not a string")
    text = text.strip().removeprefix("ed25519:")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SecurityError("bad-key", "not base64") from None
    if len(raw) != KEY_BYTES:
        raise SecurityError("bad-key", f"{len(raw)} bytes instead of {KEY_BYTES}")
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise SecurityError("bad-key", "not an Ed25519 public key") from None
    return raw


# ---------------------------------------------------------------------------
# the codec


def _hkdf(secret: bytes, purpose: str, network: str) -> bytes:
    info = f"z2z/v2/{purpose}\0{network}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"z2z", info=info).derive(secret)


@dataclass(frozen=True, slots=True)
class Opened:
    """A DHT value after `Codec.open`: its body, and who signed it (None in public mode)."""

    body: bytes
    signer: bytes | None = None  # raw Ed25519 public key
    signature: bytes = b""
    key: bytes = b""  # the DHT key it was found under (signed with the body)


class Codec:
    """DHT keys, value ids, and the value wrapper of one network (public or private).

    `secret` None: public mode, docs/protocol.md's format 1 unchanged: SHA-1 keys,
    values are the bodies themselves, unsigned; a sealed value is refused.
    With a secret: HMAC keys and ids, sealed and signed values; anything unsealed
    is refused.  `signing_key` is only needed to `seal` (exporting gateways).
    """

    def __init__(
        self,
        network: str,
        secret: bytes | None = None,
        signing_key: Ed25519PrivateKey | None = None,
        *,
        nonce: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if secret is not None and len(secret) != SECRET_BYTES:
            raise ValueError(f"a network secret is {SECRET_BYTES} bytes")
        self.network = network
        self.private = secret is not None
        self._signing_key = signing_key
        self.public_key = public_key_bytes(signing_key) if signing_key is not None else None
        self._nonce = nonce
        self._index_key = _hkdf(secret, "keys", network) if secret is not None else b""
        self._link_key = _hkdf(secret, "link", network) if secret is not None else b""
        self._relay_seed = _hkdf(secret, "relay-ca", network) if secret is not None else b""
        self._aead = ChaCha20Poly1305(_hkdf(secret, "aead", network)) if secret is not None else None

    # -- keys and ids --------------------------------------------------------

    def _name(self, text: str, size: int) -> bytes:
        if self.private:
            return hmac.new(self._index_key, text.encode(), hashlib.sha256).digest()[:size]
        return hashlib.sha1(text.encode()).digest()[:size]

    def type_key(self, service_type: str) -> bytes:
        """The 20-byte DHT key of a service type (protocol.type_key in public mode)."""
        return self._name(f"z2z/{self.network}/type/{service_type}", 20)

    def leaders_key(self) -> bytes:
        """The 20-byte DHT key of the leaders registry (stages.leaders_key in public mode)."""
        return self._name(f"z2z/{self.network}/leaders", 20)

    def value_id(self, site: str, service_type: str, instance: str, seq: int) -> int:
        """A fresh 64-bit id per version (protocol.value_id in public mode; keyed in private)."""
        text = f"{site}\0{service_type}\0{instance}\0{seq}"
        if self.private:
            text = "id\0" + text
        return int.from_bytes(self._name(text, 8), "big") or 1

    def link_tag(self, data: bytes) -> str | None:
        """Proof of network membership for what gateways say on the link (None in public mode).

        Base64 of HMAC-SHA256 with a key derived from the secret, truncated to 16 bytes:
        a device on the link without the secret cannot forge a `_z2z._udp` announcement.
        """
        if not self.private:
            return None
        mac = hmac.new(self._link_key, b"z2z/v2/announce\0" + data, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")

    def relay_ca_seed(self) -> bytes | None:
        """The Ed25519 seed of the network's relay CA (z2z.adapters.relay.pki); None in public mode."""
        return self._relay_seed if self.private else None

    @property
    def signing_key(self) -> Ed25519PrivateKey | None:
        return self._signing_key

    # -- values ----------------------------------------------------------------

    def seal(self, body: bytes, dht_key: bytes) -> bytes:
        """What to put under `dht_key`: `body` itself (public) or sealed and signed (private)."""
        if self._aead is None:
            return body
        if self._signing_key is None or self.public_key is None:
            raise ValueError("sealing needs this site's signing key")
        if len(body) > MAX_BODY_BYTES:
            raise SecurityError("too-large", f"{len(body)} bytes")
        signature = self._signing_key.sign(_SIG_CONTEXT + dht_key + body)
        nonce = self._nonce(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, self.public_key + signature + body, MAGIC + dht_key)
        return MAGIC + nonce + sealed

    def open(self, data: bytes, dht_key: bytes) -> Opened:
        """Undo `seal` (without checking the signature: see `verify`); SecurityError if refused.

        Cheap first: the size, the magic, then the AEAD tag, which proves the
        value was made by a holder of the network secret for exactly this key.
        """
        if self._aead is None:
            if data[: len(MAGIC)] == MAGIC:
                raise SecurityError("sealed", "a private network's value (no --network-secret here)")
            return Opened(data, key=dht_key)
        if len(data) > MAX_SEALED_BYTES:
            raise SecurityError("too-large", f"{len(data)} bytes")
        if data[: len(MAGIC)] != MAGIC:
            raise SecurityError("not-sealed", "an unsealed value in a private network")
        if len(data) < OVERHEAD:
            raise SecurityError("bad-seal", "truncated")
        nonce = data[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
        try:
            plain = self._aead.decrypt(nonce, data[len(MAGIC) + NONCE_BYTES :], MAGIC + dht_key)
        except InvalidTag:
            raise SecurityError("bad-seal", "another secret, another key, or tampered") from None
        signer = plain[:KEY_BYTES]
        signature = plain[KEY_BYTES : KEY_BYTES + SIG_BYTES]
        return Opened(plain[KEY_BYTES + SIG_BYTES :], signer, signature, dht_key)

    @staticmethod
    def verify(opened: Opened) -> bool:
        """True if `opened` is unsigned (public mode) or its signature is its signer's."""
        if opened.signer is None:
            return True
        try:
            Ed25519PublicKey.from_public_bytes(opened.signer).verify(
                opened.signature, _SIG_CONTEXT + opened.key + opened.body
            )
        except (InvalidSignature, ValueError):
            return False
        return True


# ---------------------------------------------------------------------------
# trust


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """News for the runtime: a site key was `learned` (persist it) or `changed` (shout)."""

    kind: str  # "learned" or "changed"
    site: str
    key: bytes
    known: bytes | None = None  # the key trusted so far, for "changed"


@dataclass(frozen=True, slots=True)
class Verdict:
    accept: bool
    reason: str = ""  # why not: "untrusted-site", "key-changed", "unsigned", "too-many-sites"
    event: KeyEvent | None = None


class TrustPolicy:
    """Which Ed25519 key may speak for which site.

    `pinned` keys (the config's ``trusted-sites``; one key or several per site,
    e.g. one per gateway of the site) always win.  In mode ``explicit`` nothing
    else is accepted.  In mode ``tofu`` the first key seen for
    a site name is learned (an event the runtime persists, handed back in `known`
    at the next start) and any other key for that site is refused afterwards, like
    SSH's known_hosts: the admin pins or forgets the site to accept a new key.
    Each (site, key) change is reported once, so logs stay loud but finite.
    """

    def __init__(
        self,
        mode: str = "tofu",
        pinned: Mapping[str, bytes | Collection[bytes]] | None = None,
        known: Mapping[str, bytes] | None = None,
        *,
        max_known: int = DEFAULT_MAX_KNOWN_SITES,
    ) -> None:
        if mode not in TRUST_MODES:
            raise ValueError(f"trust mode must be one of {TRUST_MODES}")
        self.mode = mode
        self.pinned = {
            site: frozenset([ks] if isinstance(ks, bytes) else ks) for site, ks in (pinned or {}).items()
        }
        self.known = dict(known or {})
        self.max_known = max_known
        self._reported: set[tuple[str, bytes]] = set()

    def check(self, site: str, key: bytes | None) -> Verdict:
        if key is None:
            return Verdict(False, "unsigned")
        trusted = self.pinned.get(site)
        if trusted is None and self.mode == "tofu":
            learned = self.known.get(site)
            if learned is None:
                if len(self.known) >= self.max_known:
                    return Verdict(False, "too-many-sites")
                self.known[site] = key
                return Verdict(True, event=KeyEvent("learned", site, key))
            trusted = frozenset([learned])
        if trusted is None:
            return Verdict(False, "untrusted-site")
        if key in trusted:
            return Verdict(True)
        event = None
        if (site, key) not in self._reported and len(self._reported) < self.max_known:
            self._reported.add((site, key))
            event = KeyEvent("changed", site, key, min(trusted))
        return Verdict(False, "key-changed", event)


# ---------------------------------------------------------------------------
# address policy and quotas


def parse_prefixes(prefixes: Iterable[str]) -> tuple[Network, ...]:
    """Networks from text (``10.1.0.0/16``, ``2001:db8::/32``, a bare address = /32 or /128)."""
    out = []
    for p in prefixes:
        out.append(ipaddress.ip_network(p.strip(), strict=False))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class SiteLimits:
    """What one site may announce: prefixes (None = any routable) and quotas."""

    allow: tuple[Network, ...] | None = None
    max_services: int = DEFAULT_MAX_SERVICES
    max_bytes: int = DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class ImportRules:
    """The receiving gateway's address policy and quotas, applied to every import.

    Default address rule: every address of a record must be routable (not
    loopback, link-local, multicast or unspecified) and none may be one of this
    gateway's own addresses; with `allow` for a site, every address must also lie
    in one of its prefixes.  One bad address refuses the whole record.
    """

    own_addresses: frozenset[str] = frozenset()
    sites: Mapping[str, SiteLimits] = field(default_factory=dict)
    default: SiteLimits = SiteLimits()
    max_sites: int = DEFAULT_MAX_SITES
    max_imports: int = DEFAULT_MAX_IMPORTS

    def limits(self, site: str) -> SiteLimits:
        """The site's own entry, else the ``"*"`` entry, else `default`."""
        limits = self.sites.get(site)
        if limits is None:
            limits = self.sites.get("*", self.default)
        return limits

    def address_violation(self, site: str, addresses: Iterable[str]) -> str | None:
        """None if every address may be imported from `site`, else the first offender and why."""
        allow = self.limits(site).allow
        for a in addresses:
            try:
                ip = ipaddress.ip_address(a)
            except ValueError:
                return f"{a!r} is not an address"
            if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
                return f"{ip} is not routable"
            if str(ip) in self.own_addresses:
                return f"{ip} is this gateway's own address"
            if allow is not None and not any(ip.version == n.version and ip in n for n in allow):
                return f"{ip} is outside the prefixes allowed for {site}"
        return None


def own_address_set(addresses: Iterable[str]) -> frozenset[str]:
    """Normalised textual addresses (scope ids dropped), for `ImportRules.own_addresses`."""
    out = set()
    for a in addresses:
        try:
            out.add(str(ipaddress.ip_address(a.split("%")[0])))
        except ValueError:
            continue
    return frozenset(out)
