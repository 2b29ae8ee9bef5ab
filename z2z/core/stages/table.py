"""The stage machine's rules as data: state × event → guard → new state, actions.

`StageMachine` looks rules up here; it adds no transition of its own.  For one
(state, event) the rules are tried in order and the first whose guard holds
fires; if none does, the state stays and nothing is done (the event was only
learnt).  Guards and effects are named after `StageMachine` methods
(`_g_<guard>`, `_do_<effect>`).  docs/stages.md shows this very table
(`render()`), and a test keeps the two equal.

Timers and the "answer a newcomer" duty are not transitions (they never change
the state); they are listed in `DUTIES`.
"""

from __future__ import annotations

from dataclasses import dataclass

from z2z.core.stages.events import (
    DhtStatus,
    LeadersRead,
    PeerAnnounced,
    PeerGoodbye,
    RendezvousDown,
    RendezvousUp,
    Started,
    Stopping,
    Tick,
)
from z2z.core.wire.gateways import LEADING, State

S = State
# The states a claim leads to; the entry rule picks one (docs/stages.md, "Taking the lead").
CLAIM = (S.FORMING, S.INTERCONNECTED, S.LEADER)
UNSTRUCT = (S.LEADER, S.INTERCONNECTED)
IN_DHT = (S.FORMING, S.STRUCTURED)
LEAD = tuple(s for s in S if s in LEADING)
LINK = (PeerAnnounced, PeerGoodbye, Tick)
SAME = ()  # `targets` of a rule that keeps the state


@dataclass(frozen=True, slots=True)
class Rule:
    states: tuple[State, ...]
    events: tuple[type, ...]
    guard: str  # "" = always
    targets: tuple[State, ...]  # possible new states; () = unchanged
    effect: str
    why: str  # for the docs


# fmt: off
RULES: tuple[Rule, ...] = (
    Rule((S.INIT,), (Started,), "", (S.STARTING,), "start", "listen for a leader before claiming"),
    Rule((S.INIT,), (Stopping,), "", (S.STOPPED,), "nothing", "never started: nothing to withdraw"),
    # -- stage 1: islands and election
    Rule((S.STARTING,), LINK, "leader_live", (S.FOLLOWER,), "follow", "a healthy leader is never preempted"),
    Rule((S.STARTING,), (Tick,), "window_over_may_claim", CLAIM, "claim",
         "no leader after `startup_wait`, nobody live above us"),
    Rule((S.STARTING,), (Tick,), "window_over", (S.FOLLOWER,), "follow",
         "someone above us claims (or is passed over)"),
    Rule((S.FOLLOWER,), LINK, "may_claim", CLAIM, "claim",
         "leader gone (goodbye: at once; crash: after `expiry`), nobody above us claims in time"),
    Rule(LEAD, (PeerAnnounced,), "higher_leader", (S.FOLLOWER,), "step_down",
         "two leaders met: the lower (rank, node) yields"),
    # -- stage 2: interconnection
    Rule((S.LEADER,), (RendezvousUp,), "", (S.INTERCONNECTED,), "interconnect",
         "bridge through the rendezvous, meet the other leaders"),
    Rule(IN_DHT, (RendezvousUp,), "", SAME, "meet", "the rendezvous is only a meeting point now"),
    Rule((S.INTERCONNECTED,), (RendezvousDown,), "", (S.LEADER,), "nothing", "no structure yet: wait"),
    Rule(IN_DHT, (RendezvousDown,), "", SAME, "nothing", "bridging goes on in the leaders' DHT"),
    # -- stage 3: structure formation
    Rule(UNSTRUCT, (LeadersRead, PeerAnnounced), "can_form", (S.FORMING,), "form",
         "a structure exists (join the best), or ≥ `form_threshold` other leaders (founder rule)"),
    Rule((S.FORMING,), (DhtStatus,), "has_dht_peers", (S.STRUCTURED,), "structured",
         "our node met the structure"),
    # -- stage 4: growth (merges)
    Rule(IN_DHT, (LeadersRead, PeerAnnounced), "larger_structure", SAME, "merge",
         "a larger structure (ties: higher id) exists: join it"),
    Rule((S.STRUCTURED,), (PeerAnnounced,), "smaller_structure_on_link", SAME, "introduce",
         "a smaller structure met on a link: let its leaders find ours"),
    # -- stopping
    Rule(LEAD, (Stopping,), "", (S.STOPPED,), "stop", "clean exit: followers take over on the goodbye"),
    Rule((S.STARTING, S.FOLLOWER), (Stopping,), "", (S.STOPPED,), "stop", "clean exit"),
)
# fmt: on

# The actions of each effect, in order (for the docs; the code is `StageMachine._do_<effect>`).
EFFECTS: dict[str, str] = {
    "start": "Announce",
    "follow": "Announce",
    "claim": "BecomeLeader, Announce, then by the entry rule: StartDht (FORMING) or "
    "BridgeVia(rendezvous) (INTERCONNECTED); Register + ReadLeaders (rendezvous) if it is up",
    "step_down": "StepDown, StopDht (if running), Announce",
    "interconnect": "BridgeVia(rendezvous), Register(rendezvous), ReadLeaders(rendezvous)",
    "meet": "Register(rendezvous), ReadLeaders(rendezvous)",
    "nothing": "—",
    "form": "StartDht, Register(rendezvous) if up, Announce",
    "structured": "BridgeVia(dht), Register(dht), ReadLeaders(dht), Announce",
    "merge": "JoinStructure, Register (rendezvous if up, dht if STRUCTURED), Announce",
    "introduce": "Bootstrap(the peer's contacts)",
    "stop": "StepDown and StopDht if it was leading; Goodbye",
}

# Duties run on top of the table and never change the state.
POLL_WHEN = (
    "every `registry_poll`; once STRUCTURED with no other structure known, the gap doubles up to "
    "`registry_poll_structured` (back to `registry_poll` on a claim, form, merge, RendezvousUp, "
    "or a read that shows another structure)"
)
# fmt: off
DUTIES: tuple[tuple[str, str, str, str], ...] = (
    ("liveness", "STARTING, FOLLOWER, leading",
     "every `announce_interval` while the island has a peer (legacy: always)",
     "Heartbeat(to every live peer); Announce instead if what we announce changed since the "
     "last multicast, or with no `heartbeat` socket or a live peer without one (legacy)"),
    ("probe", "STARTING, FOLLOWER, leading", "every `probe_interval` while a peer lost without a "
     "goodbye is remembered (up to `probe_for`)", "Heartbeat(to the lost peers)"),
    ("answer", "leading", "a NEW peer heard (≤ 1 per `answer_gap`)", "Heartbeat (legacy: Announce)"),
    ("register", "leading", "every `register_interval`",
     "Register(rendezvous) if up; Register(dht) if STRUCTURED"),
    ("poll", "leading", POLL_WHEN, "ReadLeaders(rendezvous) if up; ReadLeaders(dht) if STRUCTURED"),
    ("rejoin", "FORMING, STRUCTURED with 0 DHT peers", "every `rejoin_interval`",
     "Bootstrap(what we know of our structure: registry, own and island contacts)"),
)
# fmt: on


def index() -> dict[tuple[State, type], tuple[Rule, ...]]:
    """Rules by (state, event type), in table order."""
    out: dict[tuple[State, type], list[Rule]] = {}
    for rule in RULES:
        for state in rule.states:
            for ev in rule.events:
                out.setdefault((state, ev), []).append(rule)
    return {k: tuple(v) for k, v in out.items()}


def _names(items: tuple[State, ...] | tuple[type, ...]) -> str:
    return ", ".join(i.name if isinstance(i, State) else i.__name__ for i in items)


def render() -> str:
    """The transition table and the duties in Markdown, exactly as docs/stages.md shows them."""
    lines = [
        "| # | state | event | guard | new state | effect → actions | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, r in enumerate(RULES, 1):
        target = _names(r.targets) if r.targets else "(same)"
        guard = f"`{r.guard}`" if r.guard else "—"
        doing = f"`{r.effect}` → {EFFECTS[r.effect]}"
        lines.append(
            f"| {n} | {_names(r.states)} | {_names(r.events)} | {guard} | {target} | {doing} | {r.why} |"
        )
    lines += ["", "| duty | states | when | actions |", "|---|---|---|---|"]
    lines += [f"| {d} | {states} | {when} | {acts} |" for d, states, when, acts in DUTIES]
    return "\n".join(lines)
