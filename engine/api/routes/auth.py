"""Log-in for staff, pairing for devices, and who-am-I."""
from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from engine.api.deps import allow, bearer_token, engine_of
from engine.api.errors import problem
from engine.auth import service
from engine.auth.policy import PERMISSIONS, allowed
from engine.auth.service import Principal
from engine.domain.groups import groups_of

__all__ = ["router"]  # (the routes themselves are reached through the router)

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class PairIn(BaseModel):
    device_id: str = Field(min_length=1, max_length=40)
    code: str = Field(pattern=r"^[0-9]{8}$")


class MeOut(BaseModel):
    id: str
    kind: str
    role: str
    unit_code: str | None
    device_id: str | None
    permissions: list[str] = Field(description="what this role may do (engine.auth.policy); the web console shows "
                                               "only the pages these allow, and the API checks each call anyway")
    groups: list[str] = Field(description="the task groups this person's group tasks are offered to")


@router.post("/login", response_model=TokenOut, summary="Log in (staff) / 登录")
def login(body: LoginIn, request: Request, _: None = allow("public")):
    """Failed log-ins are limited per account at an address and per address (429 with the
    true Retry-After); a log-in that finds every password-checking slot busy is a 503."""
    engine = engine_of(request)
    host = request.client.host if request.client else "unknown"   # behind a proxy: see README
    try:
        token, ttl = service.login(engine, body.username, body.password, host)
    except service.LoginBusy as exc:
        return problem(503, "overloaded", str(exc), headers={"Retry-After": str(exc.retry_after)})
    return TokenOut(access_token=token, expires_in=ttl)


@router.post("/pair", response_model=TokenOut, summary="Pair a device with its one-time code / 设备配对")
def pair(body: PairIn, request: Request, _: None = allow("public")):
    engine = engine_of(request)
    with engine.transaction() as s:
        token = service.pair(s, body.device_id, body.code, engine.clock())
    return TokenOut(access_token=token, expires_in=0)


@router.post("/refresh", response_model=TokenOut, summary="Renew my access token / 续期访问令牌")
def refresh(request: Request, principal: Principal = allow("me")):
    """A new token for a person's valid one (the web console renews before expiry), with the
    account's current role; at most 12 hours after the log-in, then a 401: log in again."""
    if principal.kind != "user":
        raise service.AuthError("a device token is not renewed: devices keep theirs until revoked")
    engine = engine_of(request)
    with engine.transaction() as s:
        token = service.refresh(s, bearer_token(request) or "", engine.clock())
    return TokenOut(access_token=token, expires_in=int(service.ACCESS_TTL.total_seconds()))


@router.get("/me", response_model=MeOut, summary="Who am I / 当前身份")
def me(principal: Principal = allow("me")):
    return MeOut(id=principal.id, kind=principal.kind, role=principal.role, unit_code=principal.unit_code,
                 device_id=principal.device_id,
                 permissions=sorted(p for p in PERMISSIONS if p != "public" and allowed(p, principal.role)),
                 groups=sorted(groups_of(principal.role, principal.unit_code)))
