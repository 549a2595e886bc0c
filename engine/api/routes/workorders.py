"""HTTP routes: work-orders (being built; see issue 3)."""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["work-orders"])
