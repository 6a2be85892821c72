"""Least-privilege ACLs for one run's topics on a broker with an authorizer (`tamiyo broker up --secure`).

Each service role may do exactly what its loop does, on its run's topics and consumer groups only:

| role | read | write | groups |
|---|---|---|---|
| actor | policy | trajectories, telemetry | describe the replay's (back-pressure reads its lag) |
| replay | trajectories, priorities | batches, deadletter, telemetry | its own |
| learner | batches, policy (to continue its versions) | priorities, policy, telemetry, deadletter | its own |
| serve | state, policy | commands, deadletter, telemetry | its own |
| host | commands | state | its own (``tamiyo-host-<run>``) |

The ``admin`` role is a super user (it creates topics and these ACLs); `run_acls` is the pure table,
`grant_run_acls` sends it with one CreateAcls request (aiokafka has the protocol, not a helper).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest_v1, DescribeAclsRequest
from aiokafka.protocol.api import Request

from tamiyo.bus.clients import KafkaSettings, make_admin
from tamiyo.contracts.topics import Topics

# Kafka's wire codes (org.apache.kafka.common.acl / resource).
ANY = 1
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
    return {role: f"tamiyo-{role}-{run_id or 'default'}" for role in ("replay", "learner", "serve", "host")}


def run_acls(run_id: str) -> list[Acl]:
    t, groups = Topics.for_run(run_id), group_ids(run_id)
    reads = {
        "actor": [t.policy],
        "replay": [t.trajectories, t.priorities],
        "learner": [t.batches, t.policy],
        "serve": [t.state, t.policy],
        "host": [t.commands],
    }
    writes = {
        "actor": [t.trajectories, t.telemetry],
        "replay": [t.batches, t.deadletter, t.telemetry],
        "learner": [t.priorities, t.policy, t.telemetry, t.deadletter],
        "serve": [t.commands, t.deadletter, t.telemetry],
        "host": [t.state],
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


async def grant_run_acls(admin_settings: KafkaSettings, run_id: str, timeout_s: float = 30.0) -> list[Acl]:
    """Create `run_acls(run_id)` as the admin role (idempotent: Kafka keeps one copy of each ACL), and
    return once the broker enforces them: the controller commits ACLs before the broker's authorizer
    has them, and a service started in between was refused (measured: an idempotent producer's
    InitProducerId got CLUSTER_AUTHORIZATION_FAILED)."""
    acls = run_acls(run_id)
    admin: AIOKafkaAdminClient = make_admin(admin_settings.with_client_id("tamiyo-acls"))
    await admin.start()
    try:
        # `_send_request` is private: aiokafka has the CreateAcls/DescribeAcls protocol, not helpers.
        response = await admin._send_request(_CreateAcls(acls))
        for acl, (code, message) in zip(acls, response.creation_responses, strict=True):
            if code:
                raise for_code(code)(f"granting {acl}: {message}")
        deadline = time.monotonic() + timeout_s
        while not await _enforced(admin, acls):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the broker did not enforce the ACLs of run {run_id!r} within {timeout_s:.0f}s")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    return acls


async def _enforced(admin: AIOKafkaAdminClient, acls: list[Acl]) -> bool:
    """Whether the broker's authorizer (which answers DescribeAcls) holds every one of ``acls``."""
    response = await admin._send_request(DescribeAclsRequest(ANY, None, LITERAL, None, None, ANY, ANY))
    if response.error_code:
        raise for_code(response.error_code)(response.error_message)
    held = {(kind, name, principal, op) for kind, name, _pattern, entries in response.resources
            for principal, _host, op, _perm in entries}  # fmt: skip
    return all((a.resource_type, a.resource_name, a.principal, a.operation) in held for a in acls)
