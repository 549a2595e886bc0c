"""The field sync protocol, version 1: message shapes and the decoder for untrusted bytes.

Pure: no I/O, no engine imports; shared by the server (sync.server, engine.api.routes.sync)
and the client (sync.client). Whatever a device sends is decoded here into these types or
refused with one ProtocolError carrying a clear message (and the HTTP status it deserves).
An op that is well framed but wrong inside is not an error of the batch: it decodes to an
InvalidOp and gets its own "invalid" verdict, so one bad op never sinks the others.

    POST /sync/v1/pull  {"protocol": 1, "cursor": null | "c1....", "device": "...", "page_size": 100}
    POST /sync/v1/push  {"protocol": 1, "device": "...", "ops": [Op, ...]}

Op: {"op_id": UUID made by the device, "kind": complete_task | check_in | comment | attach | inspect_household,
"task_id", "based_on_version", "payload": {...}, "device_time": ISO 8601 with offset,
"gps": {"lat", "lon", "accuracy"} | null, "attachments": [sha256, ...]}.
The same op_id with the same canonical body (body_hash) is a duplicate; with another body a
mismatch (409)."""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["AttachPayload", "BadgeFramePayload", "CODES", "CheckInPayload", "CommentPayload", "Gps",
           "InspectHouseholdPayload", "InvalidOp", "KINDS", "MAX_ATTACHMENTS", "MAX_DEPTH", "MAX_FORM_FIELDS",
           "MAX_FRAME_BYTES", "MAX_OPS", "MAX_PAYLOAD_BYTES", "MAX_PULL_BYTES", "MAX_PUSH_BYTES", "Op", "PAYLOADS",
           "PROTOCOL_VERSION", "ProtocolError", "PullRequest", "PushBatch", "PushResponse", "SHA256", "TEXT_ID",
           "VERDICTS", "Verdict", "body_hash", "canonical_json", "decode_cursor", "decode_json", "decode_op",
           "decode_pull", "decode_push", "encode_cursor", "field_errors", "now_utc"]

PROTOCOL_VERSION = 1
MAX_PUSH_BYTES = 4 * 1024 * 1024
MAX_PULL_BYTES = 16 * 1024
MAX_OPS = 200
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_DEPTH = 12
MAX_ATTACHMENTS = 20
MAX_FRAME_BYTES = 32        # a badge advertisement's manufacturer data (devices.token frames are 24 at most)
MAX_FORM_FIELDS = 200
Kind = Literal["complete_task", "check_in", "comment", "attach", "inspect_household"]
VerdictName = Literal["applied", "duplicate", "mismatch", "conflict", "invalid", "waiting"]
KINDS: tuple[str, ...] = get_args(Kind)
VERDICTS: tuple[str, ...] = get_args(VerdictName)
CODES = {"applied": 200, "duplicate": 200, "mismatch": 409, "conflict": 409, "invalid": 422, "waiting": 202}
SHA256 = r"^[0-9a-f]{64}$"
TEXT_ID = r"^[\w.:@-]{1,64}$"


class ProtocolError(ValueError):
    """The message as a whole cannot be read. `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, code: str = "bad_message", message_zh: str | None = None):
        self.status, self.code = status, code
        self.message_zh = message_zh or "同步消息无法解析"
        super().__init__(message)


# ---- shapes ----------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4000)


class Gps(_Strict):
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    accuracy: float | None = Field(default=None, ge=0, le=1_000_000, allow_inf_nan=False, description="metres")


class Op(_Strict):
    op_id: str = Field(description="a UUID the device made for this op, lowercase canonical form")
    kind: Kind
    task_id: str | None = Field(default=None, pattern=r"^[0-9A-Za-z-]{1,36}$")
    based_on_version: int | None = Field(default=None, ge=1, le=2**31)
    payload: dict[str, Any] = Field(default_factory=dict)
    device_time: datetime
    gps: Gps | None = None
    attachments: list[str] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)

    @field_validator("op_id")
    @classmethod
    def _uuid(cls, v: str) -> str:
        from uuid import UUID
        try:
            return str(UUID(v))
        except (ValueError, AttributeError, TypeError):
            raise ValueError("must be a UUID such as 0b6c1f0e-8a1e-4d7e-9a53-1f1f8f7b2c11") from None

    @field_validator("device_time")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-03-02T08:00:00+08:00")
        return v.astimezone(timezone.utc)

    @field_validator("attachments")
    @classmethod
    def _shas(cls, v: list[str]) -> list[str]:
        import re
        for sha in v:
            if not re.fullmatch(SHA256, sha):
                raise ValueError("each attachment is the sha256 of the photo: 64 lowercase hex characters")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _needs(self) -> "Op":
        if self.kind == "complete_task" and (self.task_id is None or self.based_on_version is None):
            raise ValueError("complete_task needs task_id and based_on_version")
        if self.kind == "attach" and not self.attachments:
            raise ValueError("attach needs at least one attachment")
        text = canonical_json(self.payload)
        if "\\u0000" in text:
            raise ValueError("payload text may not contain NUL characters")
        size = len(text)
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES}")
        return self

    def body(self) -> dict:
        """The canonical body: what the hash is taken of and what the server stores."""
        return self.model_dump(mode="json")


class BadgeFramePayload(_Strict):
    """The badge's advertisement as the tablet heard it: with it the server verifies the
    check-in as it does a gateway's (engine.services.checkins.Frame)."""
    company_id: int = Field(ge=0, le=0xFFFF, description="the Bluetooth company id of the manufacturer data")
    data: str = Field(pattern=rf"^(?:[0-9a-f]{{2}}){{1,{MAX_FRAME_BYTES}}}$",
                      description="the manufacturer data (without the company id), lowercase hex")
    rssi: int | None = Field(default=None, ge=-127, le=20, description="dBm")
    lat: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    lon: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)

    @model_validator(mode="after")
    def _place(self) -> "BadgeFramePayload":
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        return self

    def raw(self) -> bytes:
        return bytes.fromhex(self.data)


class CheckInPayload(_Strict):
    shift_id: int = Field(ge=1, le=2**31)
    badge_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    seen_at: datetime
    verified: bool = Field(description="the tablet's own judgement; with a frame the server decides instead")
    source: str = Field(default="", max_length=32)
    frame: BadgeFramePayload | None = None

    @field_validator("seen_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return Op._aware(v)


class CommentPayload(_Strict):
    work_order: str = Field(min_length=1, max_length=32)
    text: str = Field(min_length=1, max_length=4000)


class AttachPayload(_Strict):
    work_order: str = Field(min_length=1, max_length=32)
    kind: Literal["evidence", "after"] = "evidence"


class InspectHouseholdPayload(_Strict):
    """A deliverer inspects a household at a delivery (offline): the gas inspection form's
    data; photos are sha256 values in its file fields (and the op's attachments)."""
    household_id: int = Field(ge=1, le=2**31)
    data: dict[str, Any] = Field(max_length=MAX_FORM_FIELDS, description="the gas inspection form's fields")


PAYLOADS: dict[str, type[BaseModel]] = {"check_in": CheckInPayload, "comment": CommentPayload,
                                        "attach": AttachPayload, "inspect_household": InspectHouseholdPayload}


class InvalidOp(BaseModel):
    """An op that could not be read; answered 'invalid' with errors per field."""
    op_id: str | None = None
    errors: dict[str, str]


class PushBatch(BaseModel):
    protocol: int = PROTOCOL_VERSION
    device: str | None = None
    sent_at: datetime | None = Field(default=None, description="the device clock when it sent the batch: "
                                                                 "tells clock skew from ops made offline")
    ops: list[Union[Op, InvalidOp]]


class _Envelope(_Strict):
    protocol: int
    device: str | None = Field(default=None, pattern=TEXT_ID)
    sent_at: datetime | None = None
    ops: list[Any] = Field(max_length=MAX_OPS)

    @field_validator("sent_at")
    @classmethod
    def _aware(cls, v):
        return None if v is None else Op._aware(v)


class PullRequest(_Strict):
    protocol: int = PROTOCOL_VERSION
    cursor: str | None = Field(default=None, max_length=200)
    device: str | None = Field(default=None, pattern=TEXT_ID)
    page_size: int = Field(default=100, ge=1, le=500)


class Verdict(BaseModel):
    op_id: str | None
    verdict: VerdictName
    code: int
    result: dict[str, Any] | None = None
    errors: dict[str, str] | None = None
    reason: str | None = Field(default=None, description="why a conflict: completed | reassigned | cancelled | "
                                                         "version | shift_closed | process_error | badge_flagged | "
                                                         "inspection_open")
    message: str | None = None
    message_zh: str | None = None
    original: str | None = Field(default=None, description="for a duplicate: the verdict it first got")
    server_time: datetime | None = None
    skew_seconds: float | None = None
    skew_flagged: bool = False


class PushResponse(BaseModel):
    protocol: int = PROTOCOL_VERSION
    server_time: datetime
    verdicts: list[Verdict]


# ---- canonical form ------------------------------------------------------------------------------
def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def body_hash(op: Op) -> str:
    """sha256 of the op's canonical JSON: equal for the same op however it was spelled."""
    return hashlib.sha256(canonical_json(op.body()).encode()).hexdigest()


def encode_cursor(generation: int) -> str:
    raw = canonical_json({"v": PROTOCOL_VERSION, "g": int(generation)}).encode()
    return "c1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The generation a cursor names; None for no cursor. ProtocolError if it is not ours."""
    if cursor is None:
        return None
    bad = ProtocolError("the cursor is not one this server made; pull without a cursor to start over",
                        code="bad_cursor", message_zh="同步游标无效，请不带游标重新拉取")
    if not cursor.startswith("c1.") or len(cursor) > 200:
        raise bad
    text = cursor[3:]
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(data, dict) or data.get("v") != PROTOCOL_VERSION or type(data.get("g")) is not int:
        raise bad
    return data["g"]


# ---- decoding untrusted bytes --------------------------------------------------------------------
def _no_duplicate_keys(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ProtocolError(f"the key {k[:40]!r} appears twice in one object", code="bad_json")
        out[k] = v
    return out


def _no_constant(name):
    raise ProtocolError(f"{name} is not a JSON number", code="bad_json")


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            if d >= limit:
                return False
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return True


def decode_json(raw: bytes, max_bytes: int) -> Any:
    if not isinstance(raw, (bytes, bytearray)):
        raise ProtocolError("the body must be bytes")
    if len(raw) > max_bytes:
        raise ProtocolError(f"the message is {len(raw)} bytes; the limit is {max_bytes}", status=413,
                            code="too_large", message_zh="同步消息过大，请分批发送")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("the message is not UTF-8 text", code="bad_json") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except ProtocolError:
        raise
    except RecursionError:
        raise ProtocolError(f"the message is nested deeper than {MAX_DEPTH} levels", code="too_deep") from None
    except ValueError as exc:
        raise ProtocolError(f"the message is not JSON: {str(exc)[:120]}", code="bad_json") from None
    if not _depth_ok(value, MAX_DEPTH):
        raise ProtocolError(f"the message is nested deeper than {MAX_DEPTH} levels", code="too_deep")
    if not isinstance(value, dict):
        raise ProtocolError("the message must be a JSON object", code="bad_message")
    return value


def _check_version(message: dict) -> None:
    version = message.get("protocol")
    if version is None:
        raise ProtocolError("the message has no 'protocol' version; this server speaks protocol "
                            f"{PROTOCOL_VERSION}", code="no_version")
    if type(version) is not int or version != PROTOCOL_VERSION:
        newer = type(version) is int and version > PROTOCOL_VERSION
        raise ProtocolError(
            f"protocol {str(version)[:20]} is not supported: this server speaks protocol {PROTOCOL_VERSION}; "
            + ("upgrade the server, or use an app version that speaks it" if newer
               else "upgrade the field app to the latest version"),
            code="upgrade_required",
            message_zh=f"同步协议版本不受支持（服务器为 {PROTOCOL_VERSION}），请升级应用")


def field_errors(exc: ValidationError, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__") or "op"
        key = f"{prefix}{where}"[:200]
        out.setdefault(key, str(err.get("msg", "invalid")).removeprefix("Value error, ")[:300])
    return out


def decode_op(raw: Any) -> Op | InvalidOp:
    op_id = None
    if isinstance(raw, dict) and isinstance(raw.get("op_id"), str):
        try:
            op_id = Op._uuid(raw["op_id"])
        except ValueError:
            op_id = None
    if not isinstance(raw, dict):
        return InvalidOp(op_id=None, errors={"op": "each op must be a JSON object"})
    try:
        op = Op.model_validate(raw)
    except ValidationError as exc:
        return InvalidOp(op_id=op_id, errors=field_errors(exc))
    shape = PAYLOADS.get(op.kind)
    if shape is not None:
        try:
            shape.model_validate(op.payload)
        except ValidationError as exc:
            return InvalidOp(op_id=op.op_id, errors=field_errors(exc, "payload."))
    return op


def decode_push(raw: bytes) -> PushBatch:
    message = decode_json(raw, MAX_PUSH_BYTES)
    _check_version(message)
    ops = message.get("ops")
    if isinstance(ops, list) and len(ops) > MAX_OPS:
        raise ProtocolError(f"a push batch holds at most {MAX_OPS} ops ({len(ops)} sent)", status=413,
                            code="too_many_ops", message_zh=f"每批最多 {MAX_OPS} 条操作")
    try:
        envelope = _Envelope.model_validate(message)
    except ValidationError as exc:
        errors = field_errors(exc)
        raise ProtocolError("the push batch is not valid: " + "; ".join(f"{k}: {v}" for k, v in errors.items())[:500],
                            code="bad_message") from None
    return PushBatch(protocol=PROTOCOL_VERSION, device=envelope.device, sent_at=envelope.sent_at,
                     ops=[decode_op(o) for o in envelope.ops])


def decode_pull(raw: bytes) -> PullRequest:
    message = decode_json(raw or b"{}", MAX_PULL_BYTES) if raw else {"protocol": PROTOCOL_VERSION}
    _check_version(message)
    try:
        request = PullRequest.model_validate(message)
    except ValidationError as exc:
        errors = field_errors(exc)
        raise ProtocolError("the pull request is not valid: " + "; ".join(f"{k}: {v}" for k, v in errors.items()),
                            code="bad_message") from None
    decode_cursor(request.cursor)
    return request


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
