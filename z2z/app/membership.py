"""Which network a gateway belongs to: private by default, public only when asked for.

Where the network secret comes from, in order:

1. ``public = true``: none (the open mode; `z2z run` warns once at start);
2. ``network-secret = FILE``: that file (must exist);
3. ``$CREDENTIALS_DIRECTORY/network.secret`` when present and not empty: what systemd
   passed with ``LoadCredential=`` (contrib/z2z.service), so the DynamicUser service
   reads a secret that root wrote with `z2z join`;
4. ``<state-dir>/network.secret``: made on first start (a new private network of
   one) or by `z2z invite`, written by `z2z join CODE`.

A secret file written by `z2z join` also names the network (``z2z-network:``); that
name is used unless the config names the network itself, and a different name in
the config is an error rather than a silent split.  Every problem is a
`MembershipError` whose message is one line.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from z2z.app.config import ConfigError, GatewayConfig
from z2z.app.keys import KeyFileError, new_secret, read_secret_file, write_private
from z2z.core import joincode
from z2z.core.security import format_secret, network_fingerprint

log = logging.getLogger(__name__)
SECRET_FILE = "network.secret"
CREDENTIAL = "network.secret"  # the credential id in contrib/z2z.service (LoadCredential=)


class MembershipError(ConfigError):
    """No usable secret, or a secret and a config that disagree; one line for the admin."""

    default_reason = "membership"


@dataclass(frozen=True, slots=True)
class Membership:
    """The network a gateway runs in, and where its secret came from."""

    network: str
    path: Path | None = None  # the secret file; None = public
    source: str = "public"  # public | network-secret | credential | state-dir
    fingerprint: str = ""  # short id of a private network (network_fingerprint)
    created: bool = False  # this call made a new secret (a new private network)

    @property
    def private(self) -> bool:
        return self.path is not None


def credential_path() -> Path | None:
    """systemd's copy of the secret (LoadCredential=), if the unit passed one."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / CREDENTIAL
    try:
        with open(path, "rb") as fh:
            text = fh.read(4096)
    except OSError:
        return None
    # The unit's fallback (SetCredential=) is only a comment: no secret passed in.
    lines = [ln.strip() for ln in text.splitlines()]
    return path if any(ln and not ln.startswith(b"#") for ln in lines) else None


def secret_location(config: GatewayConfig, *, credentials: bool = True) -> tuple[Path, str]:
    """Where this config's secret is (or will be made), and which rule chose it."""
    if config.network_secret:
        return Path(config.network_secret), "network-secret"
    cred = credential_path() if credentials else None
    if cred is not None:
        return cred, "credential"
    return Path(config.state_dir) / SECRET_FILE, "state-dir"


def resolve(
    config: GatewayConfig, *, network_given: bool, create: bool = False
) -> tuple[GatewayConfig, Membership]:
    """The config to run with (its `network_secret` and `network` filled in) and its membership.

    `network_given`: the config file or a flag named the network (it then must match
    a joined one).  `create`: make ``<state-dir>/network.secret`` if it is missing.
    """
    if config.public:
        return config, Membership(config.network)
    path, source = secret_location(config)
    created = False
    if source == "state-dir" and create and not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise MembershipError(f"cannot create {path.parent}: {exc.strerror}") from None
        try:
            new_secret(path)
        except KeyFileError as exc:
            if not path.exists():  # another process made it first: use theirs
                raise MembershipError(str(exc)) from None
        else:
            created = True  # said in the start message (start_message)
    if not path.exists() and source == "state-dir":
        raise MembershipError(
            f"no network secret at {path}: join a network first (z2z join CODE), "
            "give network-secret, or choose the open mode with --public"
        )
    try:
        secret, joined = read_secret_file(path)
    except KeyFileError as exc:
        raise MembershipError(str(exc)) from None
    network = config.network
    if joined is not None and joined != config.network:
        if network_given:
            raise MembershipError(
                f"network: the config says {config.network!r} but {path} is the secret of network "
                f"{joined!r}; remove network from the config or join again (z2z join CODE --force)"
            )
        network = joined
    resolved = replace(config, network_secret=str(path), network=network)
    return resolved, Membership(network, path, source, network_fingerprint(secret, network), created)


def start_message(member: Membership, invite_command: str) -> str:
    """The one line `z2z run` logs at start: which network, and how to add a gateway."""
    if not member.private:
        return (
            "PUBLIC mode (public = true): anyone who reaches the DHT can read every service "
            "this gateway exports (names, hosts, addresses, TXT) and inject services that "
            "appear on this link; run without --public for a private network"
        )
    how = "a new private network" if member.created else "private network"
    return (
        f"{how} {member.network} (id {member.fingerprint}, secret {member.path}); "
        f"to add a gateway: run `{invite_command}` here, then `z2z join CODE` on the new "
        "gateway before its first start"
    )


def invite(config: GatewayConfig, *, network_given: bool) -> tuple[str, Membership]:
    """`z2z invite`: the join code of this gateway's network (its secret made if missing)."""
    if config.public:
        raise MembershipError("this gateway is in the open mode (public = true): there is nothing to join")
    config, member = resolve(config, network_given=network_given, create=True)
    assert member.path is not None
    secret, _ = read_secret_file(member.path)
    return joincode.encode(secret, member.network), member


def join(config: GatewayConfig, code: str, *, network_given: bool, force: bool = False) -> Membership:
    """`z2z join CODE`: store the code's secret and network name where `z2z run` reads them.

    Writes nothing unless the code is valid, the config does not contradict it, and
    any existing secret is the same one (or `force`).
    """
    try:
        secret, network = joincode.decode(code)
    except joincode.JoinCodeError as exc:
        raise MembershipError(str(exc)) from None
    if config.public:
        raise MembershipError("the config says public = true: remove it to join a private network")
    if network_given and config.network != network:
        raise MembershipError(
            f"network: the config says {config.network!r} but the code is for network {network!r}; "
            f'set network = "{network}" or remove it'
        )
    path, _ = secret_location(config, credentials=False)
    member = Membership(network, path, "network-secret" if config.network_secret else "state-dir")
    member = replace(member, fingerprint=network_fingerprint(secret, network))
    if path.exists():
        try:
            old_secret, old_network = read_secret_file(path)
        except KeyFileError:
            old_secret, old_network = b"", None
        if old_secret == secret and (old_network or config.network) == network:
            return member  # already a member: nothing to do
        if not force:
            what = (
                f"the secret of network {old_network or config.network} "
                f"(id {network_fingerprint(old_secret, old_network or config.network)})"
                if old_secret
                else "something that is not a network secret"
            )
            raise MembershipError(f"{path} already holds {what}; pass --force to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(path, format_secret(secret, network).encode(), force=True)
    except OSError as exc:
        raise MembershipError(f"cannot create {path.parent}: {exc.strerror}") from None
    except KeyFileError as exc:
        raise MembershipError(str(exc)) from None
    return replace(member, created=True)
