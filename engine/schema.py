"""Every table of the server on one metadata, for the migrations' environment and the
test that compares them with the models. Each package declares its own tables; only this
composition module knows them all (the engine's lower layers never import the sync
server's models)."""
from __future__ import annotations

from sqlalchemy import MetaData
from sqlmodel import SQLModel

import engine.auth.models  # noqa: F401  (accounts, devices, pairing, log-in attempts)
import engine.db.models  # noqa: F401  (definitions, instances, side tables, audit, secrets)
import engine.domain.models  # noqa: F401  (units, staff, work orders, gas, attendance)
import engine.domain.records  # noqa: F401  (comments, attachments, Open311, camera)
import sync.server.models  # noqa: F401  (field sync: ops, conflicts, cursors, waits)

__all__ = ["metadata"]

metadata: MetaData = SQLModel.metadata
