"""Assembling a working system: database, schema, operations, bundled processes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from lxml import etree
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from engine import settings
from engine.clock import utcnow
from engine.db.migrate import upgrade
from engine.db.models import Definition
from engine.db.session import make_engine
from engine.domain import workorders
from engine.domain.registry import build_registry
from engine.runtime.case_engine import CaseEngine
from engine.runtime.definitions import KINDS
from engine.runtime.errors import Actor

__all__ = ["WORKFLOWS", "build", "bundled_files", "deploy_missing_bundled"]

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


def bundled_files() -> list[tuple[str, bytes]]:
    files = []
    for folder, pattern in (("forms", "*.form"), ("dmn", "*.dmn"), ("bpmn", "*.bpmn")):
        for path in sorted((WORKFLOWS / folder).glob(pattern)):
            files.append((path.name, path.read_bytes()))
    return files


def _bundled_key(name: str, raw: bytes) -> tuple[str, str]:
    """(kind, key) of one of our own workflows/ files (trusted: parsed plainly)."""
    kind = KINDS[Path(name).suffix.lower()]
    if kind == "form":
        return kind, json.loads(raw)["id"]
    wanted = "decision" if kind == "dmn" else "process"
    for el in etree.fromstring(raw).iter():
        if isinstance(el.tag, str) and etree.QName(el).localname == wanted and el.get("isExecutable") != "false":
            return kind, el.get("id")
    raise ValueError(f"{name}: no {wanted} found")


def deploy_missing_bundled(engine: CaseEngine) -> tuple[list, list[str]]:
    """Deploy the bundled definitions that were never deployed. One that differs from what is
    deployed is left alone: a designer may have deployed a newer version, and restarting the
    server must not silently replace it. Returns (deployed, descriptions of those that differ)."""
    with engine.transaction(write=False) as s:
        latest = {(d.kind, d.key): d for d in s.exec(select(Definition).order_by(Definition.version))}
    missing, differs = [], []
    for name, raw in bundled_files():
        d = latest.get(_bundled_key(name, raw))
        if d is None:
            missing.append((name, raw))
        elif d.content != raw.decode("utf-8"):
            differs.append(f"{d.kind} {d.key} v{d.version}")
    try:
        deployed = engine.deploy(missing, Actor("system")) if missing else []
    except IntegrityError:  # another worker starting at the same moment deployed them first
        deployed = []
    return deployed, differs


def build(url: str | None = None, clock: Callable = utcnow, deploy_bundled: bool = True) -> CaseEngine:
    """A case engine on `url` (or DATABASE_URL, or embedded SQLite) with the schema current and,
    unless told otherwise, the bundled processes deployed where none of that name is."""
    db = make_engine(url)
    upgrade(db)
    engine = CaseEngine(db, build_registry(), clock=clock, live_workflows=settings.current().live_workflows)
    engine.task_listeners.append(workorders.on_task_opened)
    if deploy_bundled:
        deploy_missing_bundled(engine)
    return engine
