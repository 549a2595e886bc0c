"""Which BPMN candidate groups a person belongs to, from their role and unit (see
workflows/README.md). Plain domain knowledge: the API's authorization and the sync server
both turn a principal into an engine Actor with it."""
from __future__ import annotations

__all__ = ["groups_of"]


def groups_of(role: str, unit_code: str | None) -> frozenset[str]:
    """The BPMN candidate groups a role belongs to."""
    groups: set[str] = {role}
    if role in ("unit_worker", "unit_leader") and unit_code:
        groups.add(f"unit:{unit_code}")
        if role == "unit_leader":
            groups.add(f"leader:{unit_code}")
        if unit_code == "gas-office":
            groups.add("gas_office")
    return frozenset(groups)
