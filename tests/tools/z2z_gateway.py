"""``z2z run`` with a chosen mDNS backend, for tests that need the Avahi link.

    python z2z_gateway.py --mdns avahi run --site campus-a --interface lan0 ...

Why a wrapper: the CLI may not have ``--mdns`` yet.  When it has, the flag is
passed through; otherwise the one place `run_gateway` builds its link
(``z2z.adapters.link.zeroconf.ZeroconfLink``) is pointed at `z2z.adapters.link.open_link`, so
the gateway is otherwise exactly ``z2z run``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import z2z.adapters.link.zeroconf as zeroconf_link
from z2z.adapters.link import open_link
from z2z.app import cli


def cli_has_mdns() -> bool:
    _, unknown = cli.make_parser().parse_known_args(["run", "--mdns", "auto"])
    return not unknown


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    mode = "auto"
    if args[:1] == ["--mdns"]:
        mode, args = args[1], args[2:]
    if cli_has_mdns():
        return cli.main([args[0], "--mdns", mode, *args[1:]])
    zeroconf_link.ZeroconfLink = lambda interfaces=(), **kw: open_link(mode, interfaces)  # type: ignore[assignment,misc]
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
