"""Leader election and the four stages (islands, interconnection, structure, merges).

A pure, sans-I/O core in the style of `z2z.core.bridge`: the runtime feeds events
(`events`), carries out actions (`actions`), and passes `now` in.  Modules, one
job each:

- `wire`: what crosses the network (link announcement TXT, leader record) and derived ids;
- `events` / `actions`: the vocabulary between the runtime and the machine;
- `island`: live peers on the link and who leads them;
- `registry`: known leaders grouped by structure (who to join, whom to bootstrap to);
- `table`: the transition table, as data;
- `machine`: `StageMachine`, which applies the table.

docs/stages.md explains the rules.
"""

from z2z.core.stages.actions import (
    Action,
    Announce,
    BecomeLeader,
    Bootstrap,
    BridgeVia,
    Goodbye,
    Heartbeat,
    JoinStructure,
    ReadLeaders,
    Register,
    StartDht,
    StepDown,
    StopDht,
)
from z2z.core.stages.events import (
    TICK,
    DhtStatus,
    Event,
    LeadersRead,
    PeerAnnounced,
    PeerGoodbye,
    RendezvousDown,
    RendezvousUp,
    Started,
    Stopping,
    Tick,
    instance_name,
)
from z2z.core.stages.machine import StageMachine, StageSettings
from z2z.core.wire.gateways import (
    Announcement,
    LeaderRecord,
    State,
    Store,
    WireError,
    decode_record,
    encode_record,
    from_txt,
    leaders_key,
    network_id,
    to_txt,
)

__all__ = [
    "TICK",
    "Action",
    "Announce",
    "Announcement",
    "BecomeLeader",
    "Bootstrap",
    "BridgeVia",
    "DhtStatus",
    "Event",
    "Goodbye",
    "Heartbeat",
    "JoinStructure",
    "LeaderRecord",
    "LeadersRead",
    "PeerAnnounced",
    "PeerGoodbye",
    "ReadLeaders",
    "Register",
    "RendezvousDown",
    "RendezvousUp",
    "StageMachine",
    "StageSettings",
    "StartDht",
    "Started",
    "State",
    "StepDown",
    "StopDht",
    "Stopping",
    "Store",
    "Tick",
    "WireError",
    "decode_record",
    "encode_record",
    "from_txt",
    "instance_name",
    "leaders_key",
    "network_id",
    "to_txt",
]
