#!/usr/bin/env bash
# The system half of `make test` on Debian 12 / Raspberry Pi OS (bookworm), as root:
# installs the Debian packages the tests drive for real (dhtnode, avahi-daemon, ...)
# in one idempotent step, and makes sure no machine-wide avahi-daemon or dhtnode can
# interfere with the tests or leak test services onto a real network.
#
#   tests/support/setup-debian.sh          install what is missing (fast when nothing is)
#   tests/support/setup-debian.sh --check  list what is missing; change nothing
#
# apt never starts a service here (a temporary policy-rc.d says no), and `apt-get
# update` runs only when something must be installed.  Without root it prints one
# line saying what it needs and exits 1.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# Keep in step with docs/development.md.
packages=(
    dhtnode             # the rendezvous: two real OpenDHT nodes per test network
    avahi-daemon        # private per-namespace daemons for the Avahi link backend
    avahi-utils         # avahi-browse / avahi-publish judge what z2z shows on a link
    dbus                # dbus-daemon: a private system bus per avahi-daemon
    python3-avahi       # the `avahi` module (needs dbus-python)
    python3-dbus
    python3-gi          # GLib main loop that delivers dbus-python's signals (Avahi link)
    iproute2            # ip netns, veth, bridges
    util-linux          # unshare, mount, setpriv
    procps              # pgrep
    dnsutils            # dig, for the unicast DNS front end
    nftables            # NAT in the relay tests' campus routers; byte counters by traffic class in bench upkeep/quiet
    unbound             # a real campus resolver in front of the DNS front end (own config, in a namespace)
    systemd             # systemd-analyze verify for contrib/z2z.service
    chromium            # headless browser test of the status page
    nodejs              # runs the npm mDNS stacks of the interop matrix (tests/tools/npm)
    mdns-scan           # an independent mDNS browser in the interop matrix
    python3             # Debian's python3 (3.11); the venv sees its system packages
    python3-venv        # `python3 -m venv` with ensurepip
    python3-pip
    make
    git
    ca-certificates     # pip over HTTPS
)

me="make test (tests/support/setup-debian.sh)"

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
    echo "$me: not a Debian system (no dpkg-query/apt-get): install the equivalents of ${packages[*]} yourself, then run make test-unit or the pytest line of the Makefile" >&2
    exit 1
fi

missing_packages() {
    # dpkg-query prints "ii " for installed packages; unknown names go to stderr.
    local installed
    installed=$(dpkg-query -W -f='${db:Status-Abbrev}${Package}\n' "${packages[@]}" 2>/dev/null |
        sed -n 's/^ii *//p' || true)
    local p
    for p in "${packages[@]}"; do
        grep -qx -- "$p" <<<"$installed" || echo "$p"
    done
    # npm (make npm-tools): Debian's package, unless the nodejs in place ships its own
    # (NodeSource's nodejs provides and conflicts with Debian's npm).
    command -v npm >/dev/null || echo npm
}
mapfile -t missing < <(missing_packages)

if [ "${1:-}" = "--check" ]; then
    if [ ${#missing[@]} -eq 0 ]; then
        echo "$me: all ${#packages[@]} Debian packages present"
        exit 0
    fi
    echo "$me: missing Debian packages: ${missing[*]}"
    exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
    what="root (network namespaces for the integration tests"
    if [ ${#missing[@]} -gt 0 ]; then
        what="$what; apt-get install ${missing[*]})"
    else
        what="$what)"
    fi
    echo "$me: needs $what: run it as root (sudo make test), or make test-unit for the unit tests alone" >&2
    exit 1
fi

# --- 1. Debian packages, without letting apt start any service ----------------
# Debian's dhtnode.service runs `dhtnode -b bootstrap.ring.cx`: started by apt, it
# would join the public OpenDHT network.  A policy-rc.d that says "no" keeps apt
# (invoke-rc.d / deb-systemd-invoke) from starting anything; it is removed again
# unless it was there before.
if [ ${#missing[@]} -gt 0 ]; then
    created_policy=""
    cleanup() { if [ -n "$created_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; }
    trap cleanup EXIT
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# z2z make test: no service starts during package installation\nexit 101\n' \
            >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    echo "$me: installing ${missing[*]}"
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    mapfile -t missing < <(missing_packages)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "$me: still missing after apt-get install: ${missing[*]}" >&2
        exit 1
    fi
else
    echo "$me: all ${#packages[@]} Debian packages present"
fi

# --- 2. No machine-wide avahi-daemon or dhtnode --------------------------------
# The tests never use them: each test network runs its own daemons inside
# namespaces, with a private bus and a private /run.  But a machine-wide
# avahi-daemon (a) owns /run/avahi-daemon/pid, (b) answers on the shared
# /run/dbus/system_bus_socket, so a process that misses DBUS_SYSTEM_BUS_ADDRESS
# would silently talk to it and publish test services on the machine's real
# network, and (c) could be D-Bus/socket activated again at any time.  Stop it,
# disable it and mask it, so that such a mistake fails loudly instead
# (docs/development.md says how to undo it).  The machine-wide dhtnode would talk
# to the public DHT: same treatment.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    for unit in avahi-daemon.socket avahi-daemon.service dhtnode.service; do
        if [ "$(systemctl is-enabled "$unit" 2>/dev/null || true)" != masked ] ||
            systemctl -q is-active "$unit" 2>/dev/null; then
            echo "$me: stopping and masking the machine-wide $unit"
            systemctl stop "$unit" 2>/dev/null || true
            systemctl disable "$unit" 2>/dev/null || true
            systemctl mask "$unit" 2>/dev/null || true
        fi
    done
else
    # No systemd (a container, a chroot): stop whatever an init script may have started.
    if avahi-daemon --check 2>/dev/null; then
        echo "$me: stopping the machine-wide avahi-daemon"
        avahi-daemon --kill || true
    fi
fi
if pgrep -x avahi-daemon >/dev/null; then
    # Only those in this network namespace matter; testbed daemons live elsewhere.
    my_ns=$(readlink /proc/self/ns/net)
    for pid in $(pgrep -x avahi-daemon); do
        if [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$my_ns" ]; then
            echo "$me: a machine-wide avahi-daemon (pid $pid) is still running: stop it first" >&2
            exit 1
        fi
    done
fi
