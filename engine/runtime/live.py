"""Live workflows: each worker keeps the workflow objects of the instances it stepped last, so
the next step on one of them skips deserialization (as Temporal's sticky workers skip
replaying history).

An entry is keyed by instance id and holds the row version it was saved as, and the scan of
the workflow's live tasks taken at that save (engine.runtime.state.Scan: the next step starts
from it instead of scanning again); it is used only
when the row read under lock has that same version, so a step by another worker (a newer
version) or a lost race simply misses. An entry is taken out when used (one step at a time
owns the object) and put back only after the transaction that saved it has committed: a step
that fails, or a transaction rolled back after the save, leaves nothing behind.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

__all__ = ["LiveWorkflows", "PENDING"]

PENDING = "cityloop.live_workflows"    # Session.info key: saved workflows waiting for the commit


class LiveWorkflows:
    def __init__(self, capacity: int):
        self.capacity = max(0, capacity)
        self._entries: OrderedDict[int, tuple[int, Any, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def take(self, instance_id: int, version: int) -> tuple[Any, Any] | None:
        """(workflow, its scan at the save) saved as `version` of the instance, the workflow now
        owned by the caller; or None."""
        if not self.capacity:
            return None
        with self._lock:
            found = self._entries.pop(instance_id, None)
            if found is not None and found[0] == version:
                self.hits += 1
                return found[1], found[2]
            self.misses += 1
            return None

    def borrow(self, instance_id: int, version: int) -> tuple[Any, Any] | None:
        """`take` for a reader (not counted as a step's hit or miss): the entry is the caller's
        until it hands it back with `give_back`, and a step meanwhile reads the row instead."""
        if not self.capacity:
            return None
        with self._lock:
            found = self._entries.get(instance_id)
            if found is None or found[0] != version:
                return None
            del self._entries[instance_id]
            return found[1], found[2]

    def give_back(self, instance_id: int, version: int, workflow, scan) -> None:
        """Return a borrowed entry, unless a step has meanwhile kept a copy of the instance (a
        newer version; or the same one read from the row, as good as this). It goes back as
        the most recently used: an instance someone looks at is likely to be stepped next."""
        with self._lock:
            if instance_id not in self._entries:
                self._entries[instance_id] = (version, workflow, scan)
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)

    def saved(self, info: dict, instance_id: int, version: int, workflow, scan) -> None:
        """Note a workflow just saved as `version` (and its scan at that save), in the transaction
        whose Session.info is `info`."""
        if self.capacity:
            info.setdefault(PENDING, {})[instance_id] = (version, workflow, scan)

    def committed(self, info: dict) -> None:
        """The transaction committed: keep what it saved (the newest version of each instance)."""
        pending = info.pop(PENDING, None)
        if not pending:
            return
        with self._lock:
            for instance_id, entry in pending.items():
                self._entries[instance_id] = entry
                self._entries.move_to_end(instance_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def kept(self, instance_id: int) -> int | None:
        """The version of the instance this worker keeps, or None."""
        with self._lock:
            found = self._entries.get(instance_id)
            return found[0] if found is not None else None

    def clear(self) -> None:
        """Forget every kept workflow (e.g. after a definition was changed behind the engine's back)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
