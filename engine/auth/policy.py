"""Who may call what: one permission per route, granted to roles.

Every HTTP route declares exactly one permission through `allow(...)` and every sync op
handler checks one too; the route matrix test walks all routes, so a route without a rule
fails the suite. Object-level rules (a unit sees only its orders, a deliverer only their
households) are the services' (engine.services), on top of these."""
from __future__ import annotations

__all__ = ["ANONYMOUS", "STAFF", "DEVICES", "EVERYONE", "UNIT_ROLES", "OVERSEERS", "PERMISSIONS", "allowed"]

ANONYMOUS = "anonymous"
STAFF = frozenset({"admin", "designer", "dispatcher", "reviewer", "unit_worker", "unit_leader", "deliverer",
                   "supervisor"})
DEVICES = frozenset({"gateway", "camera"})
EVERYONE = STAFF | DEVICES | {ANONYMOUS}
UNIT_ROLES = frozenset({"unit_worker", "unit_leader"})   # see and work only their own unit's orders
OVERSEERS = frozenset({"admin", "dispatcher"})           # may look at and reassign any task

PERMISSIONS: dict[str, frozenset[str]] = {
    "public": EVERYONE,                                   # log-in, pairing, Open311 intake
    "me": STAFF | DEVICES,
    "workorders.read": frozenset({"admin", "dispatcher", "reviewer", "unit_worker", "unit_leader"}),
    "workorders.create": frozenset({"admin", "dispatcher"}),
    "workorders.comment": frozenset({"admin", "dispatcher", "reviewer", "unit_worker", "unit_leader"}),
    "tasks.work": STAFF - {"designer"},                   # list/claim/complete own or group tasks
    "tasks.reassign": frozenset({"admin", "dispatcher", "unit_leader"}),
    "processes.read": frozenset({"admin", "designer", "dispatcher"}),
    "processes.deploy": frozenset({"designer"}),
    "incidents.read": frozenset({"admin", "designer"}),   # steps a process could not take, and why
    "incidents.manage": frozenset({"admin"}),             # retry or resolve them
    "camera.detect": frozenset({"camera", "admin"}),
    "gas.read": frozenset({"admin", "dispatcher", "deliverer", "unit_worker", "unit_leader"}),
    "gas.import": frozenset({"admin"}),
    "gas.inspect": frozenset({"deliverer"}),
    "attendance.read": frozenset({"admin", "supervisor", "unit_leader", "dispatcher"}),
    "attendance.checkin": frozenset({"supervisor", "gateway"}),
    "attendance.plan": frozenset({"admin", "supervisor"}),
    "attendance.manage": frozenset({"admin"}),
    "attendance.sightings": frozenset({"gateway", "supervisor", "unit_leader"}),   # raw badge frames
    "attendance.badgekeys": frozenset({"supervisor", "unit_leader"}),             # derived keys, own crews
    "dashboards.read": frozenset({"admin", "dispatcher", "reviewer", "unit_leader"}),
    "staff.manage": frozenset({"admin"}),
    "devices.manage": frozenset({"admin"}),
    "sync.upload": frozenset({"unit_worker", "unit_leader", "deliverer", "supervisor", "reviewer"}),  # tablets' photos
    "sync.pull": frozenset({"unit_worker", "unit_leader", "deliverer", "supervisor", "reviewer"}),  # field protocol
    "sync.push": frozenset({"unit_worker", "unit_leader", "deliverer", "supervisor", "reviewer"}),
    "sync.conflicts": frozenset({"admin", "dispatcher", "supervisor", "unit_leader"}),  # kept for a supervisor
}


def allowed(permission: str, role: str) -> bool:
    return role in PERMISSIONS[permission]

