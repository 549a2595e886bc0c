"""Assembling a working system: database, schema, operations, bundled processes."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from engine.clock import utcnow
from engine.db.migrate import upgrade
from engine.db.session import make_engine
from engine.domain import workorders
from engine.domain.registry import build_registry
from engine.runtime.case_engine import CaseEngine
from engine.runtime.errors import Actor

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


def bundled_files() -> list[tuple[str, bytes]]:
    files = []
    for folder, pattern in (("forms", "*.form"), ("dmn", "*.dmn"), ("bpmn", "*.bpmn")):
        for path in sorted((WORKFLOWS / folder).glob(pattern)):
            files.append((path.name, path.read_bytes()))
    return files


def build(url: str | None = None, clock: Callable = utcnow, deploy_bundled: bool = True) -> CaseEngine:
    """A case engine on `url` (or DATABASE_URL, or embedded SQLite) with the schema current."""
    db = make_engine(url)
    upgrade(db)
    engine = CaseEngine(db, build_registry(), clock=clock)
    engine.task_listeners.append(workorders.on_task_opened)
    if deploy_bundled:
        engine.deploy(bundled_files(), Actor("system"))
    return engine
