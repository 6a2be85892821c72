"""Least-privilege ACLs for one run's topics on a broker with an authorizer (`tamiyo broker up --secure`).

Each service role may do exactly what its loop does, on its run's topics and consumer groups only:

| role | read | write | groups |
|---|---|---|---|
| actor | policy | trajectories, telemetry | describe the replay's (back-pressure reads its lag) |
| replay | trajectories, priorities | batches, deadletter, telemetry | its own |
| learner | batches, policy (to continue its versions) | priorities, policy, telemetry, deadletter | its own |
| serve | state, policy | commands, deadletter, telemetry | its own |

The ``admin`` role is a super user (it creates topics and these ACLs); `run_acls` is the pure table,
`grant_run_acls` sends it with one CreateAcls request (aiokafka has the protocol, not a helper).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest_v1
from aiokafka.protocol.api import Request

from tamiyo.bus.clients import KafkaSettings, make_admin
from tamiyo.contracts.topics import Topics

# Kafka's wire codes (org.apache.kafka.common.acl / resource).
TOPIC, GROUP = 2, 3
LITERAL = 3
READ, WRITE, DESCRIBE = 3, 4, 8
ALLOW = 3


@dataclass(frozen=True)
class Acl:
    principal: str  # "User:<role>"
    resource_type: int
    resource_name: str
    operation: int

    def wire(self) -> tuple[int, str, int, str, str, int, int]:
        return (self.resource_type, self.resource_name, LITERAL, self.principal, "*", self.operation, ALLOW)


def group_ids(run_id: str) -> dict[str, str]:
    """The consumer group each role's loop uses by default for ``run_id`` (the services' own defaults)."""
    return {role: f"tamiyo-{role}-{run_id or 'default'}" for role in ("replay", "learner", "serve")}


def run_acls(run_id: str) -> list[Acl]:
    t, groups = Topics.for_run(run_id), group_ids(run_id)
    reads = {
        "actor": [t.policy],
        "replay": [t.trajectories, t.priorities],
        "learner": [t.batches, t.policy],
        "serve": [t.state, t.policy],
    }
    writes = {
        "actor": [t.trajectories, t.telemetry],
        "replay": [t.batches, t.deadletter, t.telemetry],
        "learner": [t.priorities, t.policy, t.telemetry, t.deadletter],
        "serve": [t.commands, t.deadletter, t.telemetry],
    }
    acls = [Acl(f"User:{role}", TOPIC, topic, READ) for role, topics in reads.items() for topic in topics]
    acls += [Acl(f"User:{role}", TOPIC, topic, WRITE) for role, topics in writes.items() for topic in topics]
    acls += [Acl(f"User:{role}", GROUP, group, READ) for role, group in groups.items()]
    acls.append(Acl("User:actor", GROUP, groups["replay"], DESCRIBE))
    return acls


class _CreateAcls(Request[CreateAclsRequest_v1]):
    API_KEY = 30

    def __init__(self, acls: list[Acl]) -> None:
        self.acls = acls

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class([a.wire() for a in self.acls])


async def grant_run_acls(admin_settings: KafkaSettings, run_id: str) -> list[Acl]:
    """Create `run_acls(run_id)` as the admin role (idempotent: Kafka keeps one copy of each ACL)."""
    acls = run_acls(run_id)
    admin: AIOKafkaAdminClient = make_admin(admin_settings.with_client_id("tamiyo-acls"))
    await admin.start()
    try:
        response = await admin._send_request(_CreateAcls(acls))  # a private method: aiokafka has no CreateAcls helper
    finally:
        await admin.close()
    for acl, (code, message) in zip(acls, response.creation_responses, strict=True):
        if code:
            raise for_code(code)(f"granting {acl}: {message}")
    return acls
