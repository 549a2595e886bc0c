"""Helpers for the sync protocol tests: ops as a device makes them, photos, work orders."""
from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from engine.domain import workorders
from engine.storage import AttachmentStore
from tests.district import DISPATCHER

PUSH, PULL = "/sync/v1/push", "/sync/v1/pull"
WORKER = "worker.clean-east.1"        # the unit_worker account of tests.api.conftest


def op(kind: str, device_time: datetime, payload: dict | None = None, **fields) -> dict:
    return {"op_id": str(uuid.uuid4()), "kind": kind, "payload": payload or {}, "device_time": device_time.isoformat(),
            **fields}


def batch(*ops, **extra) -> dict:
    return {"protocol": 1, "ops": list(ops), **extra}


def photo(seed: int) -> bytes:
    body = hashlib.sha256(f"photo {seed}".encode()).digest() * 64
    return b"\xff\xd8\xff\xe0" + body


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_photo(system, store: AttachmentStore, data: bytes, by: str = WORKER) -> str:
    with system.transaction() as s:
        return store.put(data, "image/jpeg", by, s, system.clock())


def east_order(system) -> str:
    """A work order dispatched to clean-east: its Task_rectify is open for the unit's workers."""
    return workorders.report(system, DISPATCHER, source="citizen", category="exposed_garbage", area="dongcheng",
                             description="bags by the bins").number


def rectify_task(system, number: str, worker: str = WORKER) -> dict:
    from engine.runtime.errors import Actor
    tasks = system.tasks.for_actor(Actor(worker, {"unit:clean-east"}), business_key=number)
    assert len(tasks) == 1, tasks
    return {**tasks[0], "version": system.instance(tasks[0]["instance_id"])["row_version"]}


def complete_op(system, task: dict, data: dict, **fields) -> dict:
    shas = [v for vs in data.values() if isinstance(vs, list) for v in vs]
    return op("complete_task", system.clock(), data, task_id=task["id"], based_on_version=task["version"],
              attachments=shas, **fields)


def paired_tablet(system, name: str) -> str:
    """Seed the test district with a clean-east unit worker and pair a tablet to them;
    returns the tablet's device token."""
    from engine.auth import service
    from engine.domain.models import Staff
    from tests.district import seed
    seed(system)
    with system.transaction() as s:
        s.add(Staff(id=WORKER, name="Worker East 1", role="unit_worker", unit_code="clean-east"))
    with system.transaction() as s:
        device, code = service.create_device(s, name, "tablet", WORKER, "admin1", system.clock())
    with system.transaction() as s:
        return service.pair(s, device.id, code, system.clock())
