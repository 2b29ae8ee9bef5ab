"""Private by default: the state-dir secret, `z2z invite`, `z2z join`, `--public`.

The commands run as real processes (exit status, stderr lines, files and modes are
what an admin sees); the rules themselves are also checked in-process.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from z2z.app import keys, membership
from z2z.app.config import ConfigError, build
from z2z.core import joincode
from z2z.core.security import format_secret, network_fingerprint


def z2z(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    p = subprocess.run(
        [sys.executable, "-m", "z2z", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    return p.returncode, p.stdout, p.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_run_makes_a_private_network_and_says_how_to_grow_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    argv = ("run", "--site", "a", "--state-dir", str(state), "--interface", "lo", "--mdns", "zeroconf")
    rc, _, err = z2z(*argv, "--rendezvous", "http://127.0.0.1:9", "--no-election")
    assert rc == 3, err  # the rendezvous is unreachable; the secret was made before
    secret_file = state / membership.SECRET_FILE
    assert mode(secret_file) == 0o600
    secret = keys.read_secret(secret_file)
    fp = network_fingerprint(secret, "z2z")
    [line] = [ln for ln in err.splitlines() if "private network" in ln]
    assert f"a new private network z2z (id {fp}" in line
    assert f"`z2z invite --state-dir {state}`" in line and "`z2z join CODE`" in line
    # a second start keeps the secret and no longer calls the network new
    rc, _, err = z2z(*argv, "--rendezvous", "http://127.0.0.1:9", "--no-election")
    assert keys.read_secret(secret_file) == secret
    assert f"INFO z2z.app.cli: private network z2z (id {fp}" in err
    # the open mode: no secret made, one WARNING that says what it exposes
    public = tmp_path / "public"
    rc, _, err = z2z(*argv[:4], str(public), *argv[5:], "--public", "--rendezvous", "http://127.0.0.1:9")
    assert not (public / membership.SECRET_FILE).exists()
    [warning] = [ln for ln in err.splitlines() if "PUBLIC" in ln]
    assert "WARNING" in warning and "read" in warning and "inject" in warning


def test_invite_then_join(tmp_path: Path) -> None:
    conf = tmp_path / "a.toml"
    conf.write_text(f'network = "acme-printers"\nstate-dir = "{tmp_path / "a"}"\n')
    rc, out, err = z2z("invite", "--config", str(conf))
    assert rc == 0, err
    code = out.splitlines()[-1]
    assert code.startswith("z2z-") and " " not in code
    assert "secret" in err and "channel you trust" in err and "z2z join CODE" in err
    secret_a = keys.read_secret(tmp_path / "a" / membership.SECRET_FILE)
    assert joincode.decode(code) == (secret_a, "acme-printers")
    assert z2z("invite", "--config", str(conf))[1].splitlines()[-1] == code  # same secret every time

    b = tmp_path / "b"
    rc, out, err = z2z("join", code, "--state-dir", str(b))
    assert rc == 0 and err == "", err
    assert f"id {network_fingerprint(secret_a, 'acme-printers')}" in out and "acme-printers" in out
    assert mode(b / membership.SECRET_FILE) == 0o600
    assert keys.read_secret_file(b / membership.SECRET_FILE) == (secret_a, "acme-printers")
    # the next run with that state dir is a member of acme-printers
    cfg, member = membership.resolve(build({}, {"site": "b", "state-dir": str(b)}), network_given=False)
    assert (cfg.network, member.source, member.path) == ("acme-printers", "state-dir", b / "network.secret")
    assert keys.read_secret(cfg.network_secret or "") == secret_a
    # joining again is harmless; a config naming another network is an error, not a split
    assert z2z("join", code, "--state-dir", str(b))[0] == 0
    with pytest.raises(membership.MembershipError, match="acme-printers"):
        membership.resolve(build({}, {"state-dir": str(b), "network": "z2z"}), network_given=True)


@pytest.mark.parametrize(
    "bad",
    ["truncated", "one-changed", "empty", "junk", "junk-prefixed", "spaces"],
)
def test_join_with_a_bad_code_changes_nothing(tmp_path: Path, bad: str) -> None:
    code = joincode.encode(os.urandom(32), "acme")
    i = len(code) // 2
    text = {
        "truncated": code[:-5],
        "one-changed": code[:i] + ("a" if code[i] != "a" else "b") + code[i + 1 :],
        "empty": "",
        "junk": os.urandom(7500).hex()[:10_000],
        "junk-prefixed": "z2z-" + "q" * 10_000,
        "spaces": code[:20] + " " + code[20:],
    }[bad]
    for target in ("fresh", "member"):
        root = tmp_path / target
        if target == "member":
            (root / "state").mkdir(parents=True)
            keys.new_secret(root / "state" / "network.secret")
        before = snapshot(tmp_path)
        rc, out, err = z2z("join", text, "--state-dir", str(root / "state"))
        assert rc == 2 and out == "", (rc, out, err)
        assert err.count("\n") == 1 and err.startswith("z2z: ") and len(err) < 200, err
        assert "Traceback" not in err
        assert snapshot(tmp_path) == before
        assert (root / "state").exists() == (target == "member")


def test_join_does_not_replace_another_secret_without_force(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    old = keys.new_secret(state / "network.secret")
    before = (state / "network.secret").read_bytes()
    new = os.urandom(32)
    code = joincode.encode(new, "acme")
    rc, out, err = z2z("join", code, "--state-dir", str(state))
    assert rc == 2 and err.count("\n") == 1 and "--force" in err
    assert f"id {network_fingerprint(old, 'z2z')}" in err
    assert (state / "network.secret").read_bytes() == before
    # a config that names another network: refused before anything is written
    conf = tmp_path / "z.toml"
    conf.write_text(f'network = "other"\nstate-dir = "{state}"\n')
    rc, out, err = z2z("join", code, "--config", str(conf), "--force")
    assert rc == 2 and "other" in err and (state / "network.secret").read_bytes() == before
    # a public config: nothing to join
    conf.write_text(f'public = true\nstate-dir = "{state}"\n')
    rc, out, err = z2z("join", code, "--config", str(conf))
    assert rc == 2 and "public" in err and (state / "network.secret").read_bytes() == before
    rc, out, err = z2z("join", code, "--state-dir", str(state), "--force")
    assert rc == 0, err
    assert keys.read_secret_file(state / "network.secret") == (new, "acme")
    assert mode(state / "network.secret") == 0o600


def test_keygen_rotation_keeps_the_network_name(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert z2z("join", joincode.encode(os.urandom(32), "acme"), "--state-dir", str(state))[0] == 0
    old = keys.read_secret(state / "network.secret")
    assert z2z("keygen", "--state-dir", str(state))[0] == 2  # exists: needs --force
    rc, out, err = z2z("keygen", "--state-dir", str(state), "--force")
    assert rc == 0 and "network acme" in out, err
    secret, network = keys.read_secret_file(state / "network.secret")
    assert secret != old and network == "acme" and mode(state / "network.secret") == 0o600


def test_browse_needs_a_secret_or_public(tmp_path: Path) -> None:
    rc, out, err = z2z("browse", "--state-dir", str(tmp_path / "none"), "_ipp._tcp")
    assert rc == 2 and err.count("\n") == 1 and "--public" in err and "z2z join" in err
    rc, out, err = z2z("browse", "--public", "--network-secret", str(tmp_path / "x"), "_ipp._tcp")
    assert rc == 2 and err.count("\n") == 1


def test_systemd_credential_wins_over_the_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state, creds = tmp_path / "state", tmp_path / "creds"
    creds.mkdir()
    cfg = build({}, {"site": "a", "state-dir": str(state)})
    # the unit's fallback (SetCredential=network.secret:# none yet): no secret passed in
    (creds / membership.CREDENTIAL).write_text("# none yet")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    resolved, member = membership.resolve(cfg, network_given=False, create=True)
    assert member.source == "state-dir" and member.created and (state / "network.secret").exists()
    # what root wrote with `z2z join`, passed in by LoadCredential=
    joined = os.urandom(32)
    (creds / membership.CREDENTIAL).write_text(format_secret(joined, "acme"))
    resolved, member = membership.resolve(cfg, network_given=False, create=True)
    assert (member.source, resolved.network) == ("credential", "acme")
    assert keys.read_secret(resolved.network_secret or "") == joined
    # an explicit network-secret still wins
    explicit = tmp_path / "explicit.secret"
    keys.new_secret(explicit)
    resolved, member = membership.resolve(
        build({}, {"state-dir": str(state), "network-secret": str(explicit)}), network_given=False
    )
    assert member.source == "network-secret"


def test_never_public_by_accident(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="public"):
        build({}, {"public": True, "network-secret": "f"})
    cfg = build({}, {"site": "a", "state-dir": str(tmp_path)})
    with pytest.raises(keys.KeyFileError, match="public"):
        keys.open_network(cfg)  # a config that was never resolved is refused, not run in the open
    with pytest.raises(membership.MembershipError, match="--public"):
        membership.resolve(cfg, network_given=False)  # no secret yet and not asked to make one
    codec, _ = keys.open_network(build({}, {"site": "a", "state-dir": str(tmp_path), "public": True}))
    assert not codec.private


def test_reload_resolves_like_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGHUP re-reads the config through the same resolution: no spurious restart warnings."""
    from z2z.app import cli

    monkeypatch.setattr(cli, "DEFAULT_CONFIG", str(tmp_path / "absent.toml"))
    state = tmp_path / "state"
    assert z2z("join", joincode.encode(os.urandom(32), "acme"), "--state-dir", str(state))[0] == 0
    args = cli.make_parser().parse_args(["run", "--site", "a", "--state-dir", str(state)])
    start, member = cli.member_config(args)
    again, _ = cli.member_config(args)
    assert start == again and start.network == "acme" and member.private
    assert cli.invite_command(args) == f"z2z invite --state-dir {state}"
