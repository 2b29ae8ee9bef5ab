"""Key files: the network secret, this site's signing key, and the sites learned on first use.

The I/O half of `z2z.core.security`.  Everything secret is written with mode 0600
(temp file, fsync, rename), and every problem an admin can cause is a
`KeyFileError` whose message is one line.

- the network secret: any path (``z2z keygen --out FILE``), same file on every
  gateway of a private network;
- the site signing key: ``<state-dir>/site.key`` unless ``site-key`` names
  another file (gateways of one site share it), PKCS#8 PEM, made on first use;
- learned site keys (trust on first use): ``<state-dir>/known_sites.json``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from z2z.app.state import StateError
from z2z.core.security import (
    DEFAULT_MAX_KNOWN_SITES,
    SECRET_BYTES,
    Codec,
    SecurityError,
    TrustPolicy,
    format_public_key,
    format_secret,
    parse_public_key,
    parse_secret_file,
)

if TYPE_CHECKING:
    from z2z.app.config import GatewayConfig

log = logging.getLogger(__name__)
SITE_KEY_FILE = "site.key"
KNOWN_SITES_FILE = "known_sites.json"
_MAX_FILE = 1 << 20


class KeyFileError(StateError):
    """A key file that cannot be read, parsed or written; the message is one line."""

    default_reason = "key-file"


def write_private(path: str | os.PathLike[str], data: bytes, *, force: bool = False) -> None:
    """Write `data` to `path` with mode 0600, atomically; refuse to overwrite unless `force`."""
    target = Path(path)
    if target.exists() and not force:
        raise KeyFileError(f"{target} exists; pass --force to overwrite it")
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".z2z-key-")  # mkstemp: mode 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise KeyFileError(f"cannot write {target}: {exc.strerror or exc}") from None


def _read(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_FILE + 1)
    except FileNotFoundError:
        raise KeyFileError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_FILE:
        raise KeyFileError(f"{what} {path} is too large to be one")
    return data


def new_secret(path: str | os.PathLike[str], *, force: bool = False, network: str | None = None) -> bytes:
    """`z2z keygen`: a fresh random network secret in `path` (mode 0600); returns it."""
    secret = secrets.token_bytes(SECRET_BYTES)
    write_private(path, format_secret(secret, network).encode(), force=force)
    return secret


def read_secret(path: str | os.PathLike[str]) -> bytes:
    """The network secret in `path`; KeyFileError naming the file if it is missing or bad."""
    return read_secret_file(path)[0]


def read_secret_file(path: str | os.PathLike[str]) -> tuple[bytes, str | None]:
    """The secret in `path` and the network name it carries (None: the config's network)."""
    p = Path(path)
    data = _read(p, "network secret file")
    try:
        secret = parse_secret_file(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise KeyFileError(f"network secret file {p} is not text (make one: z2z keygen --out FILE)") from None
    except SecurityError as exc:
        raise KeyFileError(f"network secret file {p}: {exc}") from None
    try:
        if os.stat(p).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("network secret file %s is readable by others: chmod 600 it", p)
    except OSError:
        pass
    return secret


def site_key_path(state_dir: str | os.PathLike[str], site_key: str | None = None) -> Path:
    return Path(site_key) if site_key else Path(state_dir) / SITE_KEY_FILE


def load_signing_key(path: str | os.PathLike[str], *, create: bool = True) -> Ed25519PrivateKey:
    """This site's Ed25519 key from `path`, made (mode 0600) if missing and `create`."""
    p = Path(path)
    if not p.exists() and create:
        try:
            p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise KeyFileError(f"cannot create {p.parent}: {exc.strerror}") from None
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        write_private(p, pem)
        log.info("made a new site signing key in %s", p)
        return key
    data = _read(p, "site key file")
    try:
        loaded = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"site key file {p} is not a PEM private key: {exc}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise KeyFileError(f"site key file {p} does not hold an Ed25519 key")
    return loaded


def load_known_sites(state_dir: str | os.PathLike[str]) -> dict[str, bytes]:
    """Site keys learned on first use; a damaged file is logged as an error and treated as empty."""
    p = Path(state_dir) / KNOWN_SITES_FILE
    try:
        doc = json.loads(_read(p, "known sites file"))
    except KeyFileError as exc:
        if p.exists():
            log.error("%s: every site will be learned anew", exc)
        return {}
    except (ValueError, RecursionError) as exc:
        log.error("known sites file %s is not JSON (%s): every site will be learned anew", p, exc)
        return {}
    out: dict[str, bytes] = {}
    if not isinstance(doc, dict):
        log.error("known sites file %s is not a JSON object: ignored", p)
        return out
    for site, text in list(doc.items())[:DEFAULT_MAX_KNOWN_SITES]:
        try:
            out[str(site)] = parse_public_key(text)
        except SecurityError:
            log.error("known sites file %s: bad key for %r: ignored", p, site)
    return out


def save_known_sites(state_dir: str | os.PathLike[str], known: dict[str, bytes]) -> None:
    doc = {site: format_public_key(key) for site, key in sorted(known.items())}
    write_private(Path(state_dir) / KNOWN_SITES_FILE, json.dumps(doc, indent=1).encode() + b"\n", force=True)


def open_network(config: GatewayConfig) -> tuple[Codec, TrustPolicy]:
    """The codec and trust policy a gateway runs with: public, or private with its key files.

    Reads the network secret, the site signing key (made on first use) and the
    sites learned so far; KeyFileError (one line) if a file is missing or bad.
    """
    if config.network_secret is None:
        if not config.public:  # never fall back to the open mode by accident
            raise KeyFileError("no network secret given and public is not set (see z2z.app.membership)")
        return Codec(config.network), TrustPolicy()
    secret = read_secret(config.network_secret)
    signing_key = load_signing_key(site_key_path(config.state_dir, config.site_key))
    pinned = {site: [parse_public_key(k) for k in ks] for site, ks in config.trusted_sites.items()}
    trust = TrustPolicy(config.trust, pinned, load_known_sites(config.state_dir))
    return Codec(config.network, secret, signing_key), trust
