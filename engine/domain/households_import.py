"""Importing gas households from a CSV file, with a per-row error report.

Columns: address_code, holder, phone, deliverer_id and optionally last_inspected_at (header
names are trimmed and case-insensitive; their order is free). The file is UTF-8, with or
without a byte-order mark. Rows are numbered as a spreadsheet shows them: the header is row 1.

An address code that already has a household updates it (holder, phone and deliverer are
taken from the file; an inspection date only ever moves forward); any other row creates one.
With `all_or_nothing` a single bad row means nothing is written; otherwise the good rows are.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, time

from sqlalchemy import bindparam, insert, update
from sqlmodel import Session, select

from engine.clock import from_db, to_db
from engine.domain.attendance import DISTRICT_TZ
from engine.domain.common import add_months
from engine.domain.gas import INSPECTION_MONTHS
from engine.domain.models import AddressCode, Household, Staff

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 50_000
REQUIRED = ("address_code", "holder", "phone", "deliverer_id")
OPTIONAL = ("last_inspected_at",)
_PHONE = re.compile(r"^[0-9+()\- ]{3,32}$")
_CHUNK = 1000
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d")
_DATETIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d %H:%M:%S")


class FileRejected(ValueError):
    """The file as a whole cannot be read (encoding, header, too many rows)."""

    def __init__(self, message: str, row: int = 1, field: str = "file"):
        self.row, self.field = row, field
        super().__init__(message)


@dataclass
class Row:
    row: int
    address_code: str
    holder: str
    phone: str | None
    deliverer_id: str | None
    last_inspected_at: datetime | None


@dataclass
class Report:
    created: int = 0
    updated: int = 0
    rows: int = 0
    written: bool = False
    errors: list[dict] = field(default_factory=list)

    def error(self, row: int, field_name: str, message: str) -> None:
        self.errors.append({"row": row, "field": field_name, "message": message})

    def as_dict(self) -> dict:
        return {"created": self.created, "updated": self.updated, "rows": self.rows, "written": self.written,
                "errors": self.errors}


def decode(raw: bytes) -> str:
    if len(raw) > MAX_BYTES:
        raise FileRejected(f"the file is over {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRejected(f"the file is not UTF-8 (bad byte at offset {exc.start}); save it as 'CSV UTF-8' "
                           "/ 文件不是 UTF-8 编码") from None
    if "\x00" in text:
        raise FileRejected("the file contains NUL bytes: it is not a text CSV file")
    return text


def parse_time(text: str) -> datetime:
    """A date (district-local midnight), a local date-time, or an ISO date-time with offset;
    years 1990 to 2999."""
    value = _parse_time(text.strip())
    if not 1990 <= value.year <= 2999:
        raise ValueError(f"{text[:40]!r} is not a plausible inspection date")
    return value


def _parse_time(text: str) -> datetime:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.combine(datetime.strptime(text, fmt).date(), time(0), DISTRICT_TZ)
        except ValueError:
            pass
    for fmt in _DATETIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=DISTRICT_TZ)
        except ValueError:
            pass
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a date (use YYYY-MM-DD)") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=DISTRICT_TZ)


def read_rows(text: str, now: datetime, report: Report) -> list[Row]:
    """Rows that are well formed on their own; problems go into `report`."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise FileRejected(f"the header cannot be read: {exc}") from None
    if not header or not any(h.strip() for h in header):
        raise FileRejected("the file is empty: the first row must name the columns", field="header")
    names = [h.strip().lower() for h in header]
    unknown = [n for n in names if n not in REQUIRED + OPTIONAL]
    missing = [n for n in REQUIRED if n not in names]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if unknown or missing or doubled:
        parts = ([f"unknown column(s) {', '.join(map(repr, unknown))}"] if unknown else []) + \
                ([f"missing column(s) {', '.join(missing)}"] if missing else []) + \
                ([f"column(s) named twice: {', '.join(doubled)}"] if doubled else [])
        raise FileRejected("; ".join(parts) + f" (columns are {', '.join(REQUIRED + OPTIONAL)})", field="header")
    index = {n: i for i, n in enumerate(names)}
    rows: list[Row] = []
    number = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise FileRejected(f"row {number + 1} cannot be read: {exc}", row=number + 1) from None
        number += 1
        if not any(c.strip() for c in cells):
            continue  # blank lines are not rows
        report.rows += 1
        if report.rows > MAX_ROWS:
            raise FileRejected(f"the file has more than {MAX_ROWS:,} rows; split it", row=number)
        row = _check_row(number, cells, index, len(names), now, report)
        if row is not None:
            rows.append(row)
    return rows


def _check_row(number: int, cells: list[str], index: dict, width: int, now: datetime, report: Report) -> Row | None:
    if len(cells) != width:
        report.error(number, "row", f"has {len(cells)} cells, the header has {width}")
        return None
    get = {n: cells[i].strip() for n, i in index.items()}
    before = len(report.errors)
    code, holder, phone, deliverer = get["address_code"], get["holder"], get["phone"], get["deliverer_id"]
    if not code:
        report.error(number, "address_code", "required")
    elif len(code) > 40:
        report.error(number, "address_code", "longer than 40 characters")
    if not holder:
        report.error(number, "holder", "required")
    elif len(holder) > 120:
        report.error(number, "holder", "longer than 120 characters")
    if phone and not _PHONE.match(phone):
        report.error(number, "phone", "3 to 32 digits, spaces, +, -, ( or )")
    if len(deliverer) > 64:
        report.error(number, "deliverer_id", "longer than 64 characters")
    inspected = None
    if get.get("last_inspected_at"):
        try:
            inspected = parse_time(get["last_inspected_at"])
            if inspected > now:
                report.error(number, "last_inspected_at", "is in the future")
        except ValueError as exc:
            report.error(number, "last_inspected_at", str(exc))
    if len(report.errors) > before:
        return None
    return Row(number, code, holder, phone or None, deliverer or None, inspected)


def _in_chunks(session: Session, model, column, values: list) -> list:
    found = []
    for i in range(0, len(values), _CHUNK):
        found.extend(session.exec(select(model).where(column.in_(values[i:i + _CHUNK]))).all())
    return found


def import_households(session: Session, raw: bytes, now: datetime, all_or_nothing: bool = True) -> Report:
    """Check every row, then write (all, or only the good ones). Raises FileRejected for a
    file that cannot be read at all. The caller owns the transaction."""
    report = Report()
    rows = read_rows(decode(raw), now, report)
    first_row: dict[str, int] = {}
    unique: list[Row] = []
    for r in rows:
        if r.address_code in first_row:
            report.error(r.row, "address_code",
                         f"{r.address_code!r} appears again (first in row {first_row[r.address_code]})")
        else:
            first_row[r.address_code] = r.row
            unique.append(r)
    codes = [r.address_code for r in unique]
    known_codes = {a.code for a in _in_chunks(session, AddressCode, AddressCode.code, codes)}
    deliverer_ids = sorted({r.deliverer_id for r in unique if r.deliverer_id})
    deliverers = {st.id for st in _in_chunks(session, Staff, Staff.id, deliverer_ids)
                  if st.role == "deliverer" and st.active}
    existing = {h.address_code: h for h in _in_chunks(session, Household, Household.address_code, codes)}
    good: list[Row] = []
    for r in unique:
        ok = True
        if r.address_code not in known_codes:
            report.error(r.row, "address_code", f"no address code {r.address_code!r} in the register")
            ok = False
        if r.deliverer_id and r.deliverer_id not in deliverers:
            report.error(r.row, "deliverer_id", f"no active deliverer {r.deliverer_id!r}")
            ok = False
        if ok:
            good.append(r)
    report.errors.sort(key=lambda e: (e["row"], e["field"]))
    if report.errors and all_or_nothing:
        return report
    _write(session, good, existing, report)
    report.written = True
    return report


_UPDATE = (update(Household).where(Household.id == bindparam("hid"))
           .values(holder=bindparam("holder"), phone=bindparam("phone"), deliverer_id=bindparam("deliverer_id"),
                   last_inspected_at=bindparam("last_at"), next_due_at=bindparam("next_at")))


def _write(session: Session, rows: list[Row], existing: dict[str, Household], report: Report) -> None:
    new, changed = [], []
    for r in rows:
        hh = existing.get(r.address_code)
        if hh is None:
            last = to_db(r.last_inspected_at)
            new.append({"address_code": r.address_code, "holder": r.holder, "phone": r.phone,
                        "deliverer_id": r.deliverer_id, "last_inspected_at": last,
                        "next_due_at": to_db(add_months(r.last_inspected_at, INSPECTION_MONTHS)) if last else None,
                        "supply_suspended": False})
            continue
        last, next_at = from_db(hh.last_inspected_at), from_db(hh.next_due_at)
        if r.last_inspected_at is not None and (last is None or r.last_inspected_at > last):
            last, next_at = r.last_inspected_at, add_months(r.last_inspected_at, INSPECTION_MONTHS)
        changed.append({"hid": hh.id, "holder": r.holder, "phone": r.phone, "deliverer_id": r.deliverer_id,
                        "last_at": to_db(last), "next_at": to_db(next_at)})
    conn = session.connection()
    for i in range(0, len(new), _CHUNK):
        conn.execute(insert(Household), new[i:i + _CHUNK])
    for i in range(0, len(changed), _CHUNK):
        conn.execute(_UPDATE, changed[i:i + _CHUNK])
    report.created, report.updated = len(new), len(changed)


def example_csv() -> str:
    """A header and one row, for the console's "download template" link."""
    return ("address_code,holder,phone,deliverer_id,last_inspected_at\n"
            "DC01-001-01,Zhang San,13800000000,deliverer1,2026-01-15\n")


__all__ = ["FileRejected", "Report", "import_households", "MAX_BYTES", "MAX_ROWS", "example_csv"]
