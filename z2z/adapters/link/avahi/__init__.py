"""The Avahi link backend: browse, resolve and publish proxies through avahi-daemon.

One module per job: `names` (pure: avahi's escaped names, rdata, scopes), `bus`
(the GLib thread and the pool of D-Bus connections), `discovery` (browsing and
resolving), `publishing` (entry groups), `link` (`AvahiLink` assembled, its
lifecycle and daemon restarts).

On Raspberry Pi OS and Debian, avahi-daemon owns mDNS on the link; a second
responder beside it works (see `z2z.adapters.link.zeroconf`) but every host name, probe and
conflict is then handled twice.  `AvahiLink` asks the daemon instead, over its
D-Bus API, with python-avahi (Debian's ``python3-avahi``, the ``avahi`` module:
constants and interface names) and dbus-python.  Like `ZeroconfLink` it only
translates: what to bridge is decided in the core.

How it is built, and why:

* **Threads.**  dbus-python delivers signals through a GLib main loop, and its
  objects are not meant to be shared between threads.  One daemon thread runs
  GLib's default main context (`_GLibThread`); every D-Bus call and every signal
  handler runs there.  The gateway's asyncio loop submits work with
  ``GLib.idle_add`` and awaits it as a future; signals come back with
  ``call_soon_threadsafe``.  Calls are *blocking* inside that thread: they stay
  in order, and a connection never has more than one reply pending (the system
  bus allows 128).
* **Connections.**  avahi-daemon counts objects (entry groups, browsers) per D-Bus
  client, at most ``objects-per-client-max`` = 1024 by default.  `_AvahiClient`
  keeps a pool of private system-bus connections and opens another when the
  current ones are full (or avahi says ``TooManyObjects`` earlier), so 2,000
  proxied services are no problem.
* **Resolution.**  Avahi 0.8's ServiceResolver hands TXT strings over D-Bus in
  reverse wire order (fixed only in 0.9), gives one address per family and says
  nothing when TXT changes.  So each browsed instance gets record browsers for
  its SRV and TXT and for the A/AAAA of its host: the raw rdata from avahi's
  cache, exact bytes in wire order, every address, and every change.
* **Publishing.**  One entry group per proxied service (``AddService`` on each
  chosen interface), and one per proxied *host* holding its addresses
  (``AddAddress`` with ``NO_REVERSE``: the reverse PTR belongs to the real host),
  shared by all services on that host: withdrawing one service must not say
  goodbye for addresses another one still uses.  Address records skip probing:
  the host names are ours by construction (site-suffixed by the core), and a
  probe would only add a goodbye-then-silence gap when a host's addresses change.
  Services are probed; on ``COLLISION`` they are renamed with avahi's
  ``GetAlternativeServiceName`` and added again (a name already browsed on the
  link is renamed before probing, as `ZeroconfLink` does).
* **Restarts.**  The daemon's unique bus name is watched.  Calls go to that
  unique name, so nothing meant for a dead daemon can land on its successor;
  when a new daemon appears, browsers are re-created and every host and service
  is published again.  Services seen before are reported again only if they
  changed, and reported gone only if the new daemon does not see them (or if
  no daemon comes back within `AWAY_GRACE`).  A gateway crash needs no such
  care: avahi-daemon frees a vanished client's groups and sends the goodbyes,
  so avahi's default TTLs are kept (`ZeroconfLink` must shorten its own).
* **Costs.**  avahi-daemon answers each probe's ANY question by scanning all its
  entries, so registering N services costs it O(N²) CPU: 2,000 at once take
  ~15-25 s of daemon CPU on a 2-core test machine.  Nothing in the D-Bus API
  avoids that short of skipping the probe (AddRecord with NO_PROBE).
"""

from z2z.adapters.link.avahi.bus import probe_avahi
from z2z.adapters.link.avahi.link import AvahiLink
from z2z.adapters.link.avahi.names import Scope, escape_label, parse_address, parse_srv, select_scopes

__all__ = ["AvahiLink", "Scope", "escape_label", "parse_address", "parse_srv", "probe_avahi", "select_scopes"]
