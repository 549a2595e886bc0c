"""Deploying BPMN/DMN/form files as immutable versions, and the parsed-spec cache."""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from lxml import etree
from SpiffWorkflow.bpmn.parser import BpmnValidator
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from sqlalchemy import func
from sqlmodel import Session, select

from engine import forms
from engine.bpmn.parser import CAMUNDA_NS, CityParser
from engine.bpmn.specs import use_engine_clock
from engine.bpmn.validate import BPMN_NS, check_bpmn, check_dmn
from engine.bpmn.xml import DefinitionError, load_xml
from engine.clock import to_db
from engine.db import direct
from engine.db.models import Definition
from engine.runtime.rows import LATEST_PROCESS

__all__ = ["DefinitionStore", "Deployed", "KINDS", "MAX_FILES_PER_DEPLOY"]

KINDS = {".bpmn": "bpmn", ".dmn": "dmn", ".form": "form", ".json": "form"}
MAX_FILES_PER_DEPLOY = 50


@dataclass(frozen=True)
class Deployed:
    kind: str
    key: str
    version: int
    definition_id: int
    changed: bool


@dataclass
class _Candidate:
    kind: str
    key: str
    filename: str
    content: str
    refs: dict  # for processes: {"dmn": set, "form": set}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _decode(filename: str, raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DefinitionError(filename, [(None, "file is not UTF-8 text")]) from None


def _process_refs(root) -> tuple[str, dict]:
    processes = [p for p in root.findall(f"{{{BPMN_NS}}}process") if p.get("isExecutable", "true") != "false"]
    if len(processes) != 1:
        raise DefinitionError("", [(None, f"a file must hold exactly one executable process (found {len(processes)})")])
    proc = processes[0]
    dmn = {el.get(f"{{{CAMUNDA_NS}}}decisionRef") for el in proc.iter(f"{{{BPMN_NS}}}businessRuleTask")}
    frm = {el.get(f"{{{CAMUNDA_NS}}}formRef") for el in proc.iter(f"{{{BPMN_NS}}}userTask")}
    return proc.get("id"), {"dmn": sorted(d for d in dmn if d), "form": sorted(f for f in frm if f)}


class DefinitionStore:
    def __init__(self, operations: Iterable[str]):
        self.operations = frozenset(operations)
        self._specs: dict[int, object] = {}
        self._forms: dict[int, forms.Form] = {}
        self._pins: dict[int, dict] = {}
        self._lock = threading.Lock()

    # ---- deploy -------------------------------------------------------------------
    def deploy(self, session: Session, files: list[tuple[str, bytes | str]], actor: str, now) -> list[Deployed]:
        """Validate every file, then store new versions. Nothing is stored if any file fails."""
        if not files:
            raise DefinitionError("deploy", [(None, "no files given")])
        if len(files) > MAX_FILES_PER_DEPLOY:
            raise DefinitionError("deploy", [(None, f"at most {MAX_FILES_PER_DEPLOY} files per deploy")])
        candidates: list[_Candidate] = []
        dmn_roots, bpmn_roots = [], []
        for filename, raw in files:
            kind = KINDS.get(Path(filename).suffix.lower())
            if kind is None:
                raise DefinitionError(filename, [(None, "unknown file type; expected .bpmn, .dmn or .form")])
            content = _decode(filename, raw)
            if kind == "form":
                try:
                    form = forms.parse_form(content, filename)
                except forms.FormError as exc:
                    raise DefinitionError(filename, [(None, p) for p in exc.problems]) from None
                candidates.append(_Candidate("form", form.id, filename, content, {}))
            elif kind == "dmn":
                root = load_xml(content, filename)
                problems = check_dmn(root)
                if problems:
                    raise DefinitionError(filename, problems)
                ids = [d.get("id") for d in root.iter()
                       if isinstance(d.tag, str) and etree.QName(d).localname == "decision"]
                if len(ids) != 1:
                    raise DefinitionError(filename,
                                          [(None, f"a DMN file must hold exactly one decision (found {len(ids)})")])
                candidates.append(_Candidate("dmn", ids[0], filename, content, {}))
                dmn_roots.append((filename, root))
            else:
                bpmn_roots.append((filename, content, load_xml(content, filename)))
        _no_duplicates(candidates)
        form_ids = {c.key for c in candidates if c.kind == "form"} | self._latest_keys(session, "form")
        decision_ids = {c.key for c in candidates if c.kind == "dmn"} | self._latest_keys(session, "dmn")
        for filename, content, root in bpmn_roots:
            problems = check_bpmn(root, self.operations, form_ids, decision_ids)
            if problems:
                raise DefinitionError(filename, problems)
            try:
                key, refs = _process_refs(root)
            except DefinitionError as exc:
                raise DefinitionError(filename, exc.problems) from None
            candidates.append(_Candidate("bpmn", key, filename, content, refs))
        _no_duplicates(candidates)
        # Parse each process with the decisions it will be pinned to: the library's own
        # checks (structure, XSD-level errors, gateway defaults) run before anything is stored.
        dmn_text = {c.key: c.content for c in candidates if c.kind == "dmn"}
        for c in candidates:
            if c.kind == "bpmn":
                texts = [dmn_text.get(d) or self._latest(session, "dmn", d).content for d in c.refs["dmn"]]
                _parse_spec(c.filename, c.content, texts, c.key, validate=True)
        return self._store(session, candidates, actor, now)

    def _store(self, session, candidates, actor, now) -> list[Deployed]:
        results: list[Deployed] = []
        changed_refs: dict[str, set] = {"dmn": set(), "form": set()}
        for kind in ("form", "dmn"):
            for c in (c for c in candidates if c.kind == kind):
                d, changed = self._put(session, c, "{}", actor, now)
                results.append(d)
                if changed:
                    changed_refs[kind].add(c.key)
        deployed_processes = {c.key for c in candidates if c.kind == "bpmn"}
        # A new decision table or form reaches new instances: re-pin the processes using it.
        for row in self._latest_rows(session, "bpmn"):
            if row.key in deployed_processes:
                continue
            refs = json.loads(row.pins)
            if set(refs.get("dmn", {})) & changed_refs["dmn"] or set(refs.get("form", {})) & changed_refs["form"]:
                root = load_xml(row.content, row.filename)
                _, r = _process_refs(root)
                candidates.append(_Candidate("bpmn", row.key, row.filename, row.content, r))
        for c in (c for c in candidates if c.kind == "bpmn"):
            pins = {kind: {k: self._latest(session, kind, k).id for k in c.refs[kind]} for kind in ("dmn", "form")}
            d, _ = self._put(session, c, json.dumps(pins, sort_keys=True), actor, now)
            results.append(d)
        return results

    def _put(self, session, c: _Candidate, pins: str, actor, now) -> tuple[Deployed, bool]:
        latest = self._latest(session, c.kind, c.key, required=False)
        sha = _sha(c.content + "\0" + pins)
        if latest is not None and latest.sha256 == sha:
            return Deployed(c.kind, c.key, latest.version, latest.id, False), False
        row = Definition(kind=c.kind, key=c.key, version=(latest.version + 1) if latest else 1, sha256=sha,
                         filename=Path(c.filename).name[:255], content=c.content, pins=pins,
                         deployed_at=to_db(now), deployed_by=actor)
        session.add(row)
        session.flush()
        return Deployed(c.kind, c.key, row.version, row.id, True), True

    # ---- lookups ------------------------------------------------------------------
    def _latest_keys(self, session, kind) -> set[str]:
        return set(session.exec(select(Definition.key).where(Definition.kind == kind).distinct()).all())

    def _latest_rows(self, session, kind) -> list[Definition]:
        sub = (select(Definition.key, func.max(Definition.version).label("v")).where(Definition.kind == kind)
               .group_by(Definition.key).subquery())
        return list(session.exec(select(Definition)
                                 .join(sub, (Definition.key == sub.c.key) & (Definition.version == sub.c.v))
                                 .where(Definition.kind == kind)).all())

    def _latest(self, session, kind, key, required=True) -> Definition | None:
        row = session.exec(select(Definition).where(Definition.kind == kind, Definition.key == key)
                           .order_by(Definition.version.desc()).limit(1)).first()
        if row is None and required:
            raise KeyError(f"no {kind} named {key!r} is deployed")
        return row

    def latest_process(self, session, key) -> tuple[int, int]:
        """(definition id, version) of the newest version of a process."""
        row = direct.execute(session.connection(), LATEST_PROCESS, {"key": key}).first()
        if row is None:
            raise KeyError(f"no process named {key!r} is deployed")
        return row

    def pinned(self, session, definition_id: int, kind: str, key: str) -> int | None:
        """Id of the decision or form a process version was deployed with (cached: immutable)."""
        pins = self._pins.get(definition_id)
        if pins is None:
            pins = json.loads(session.exec(select(Definition.pins).where(Definition.id == definition_id)).one())
            with self._lock:
                self._pins[definition_id] = pins
        return pins.get(kind, {}).get(key)

    def version_of(self, session, definition_id: int) -> Definition:
        return session.get(Definition, definition_id)

    def versions(self, session, kind=None) -> list[Definition]:
        q = select(Definition).order_by(Definition.kind, Definition.key, Definition.version)
        if kind:
            q = q.where(Definition.kind == kind)
        return list(session.exec(q).all())

    # ---- parsed caches (definitions are immutable, so caching by id is safe) -------
    def spec(self, session, definition_id: int):
        """(spec, subprocess_specs) of a deployed process version."""
        cached = self._specs.get(definition_id)
        if cached is not None:
            return cached
        row = session.get(Definition, definition_id)
        pins = json.loads(row.pins)
        dmn_texts = [session.get(Definition, i).content for i in pins.get("dmn", {}).values()]
        spec = _parse_spec(row.filename, row.content, dmn_texts, row.key)
        with self._lock:
            self._specs[definition_id] = spec
        return spec

    def form_for(self, session, process_definition_id: int, form_ref: str) -> tuple[int, forms.Form] | None:
        form_id = self.pinned(session, process_definition_id, "form", form_ref)
        if form_id is None:
            return None
        form = self._forms.get(form_id)
        if form is None:
            form = forms.parse_form(session.get(Definition, form_id).content, form_ref)
            with self._lock:
                self._forms[form_id] = form
        return form_id, form


def _no_duplicates(candidates: list[_Candidate]) -> None:
    seen = {}
    for c in candidates:
        if (c.kind, c.key) in seen:
            raise DefinitionError(c.filename,
                                  [(None, f"{c.kind} {c.key!r} is also defined in {seen[(c.kind, c.key)]}")])
        seen[(c.kind, c.key)] = c.filename


_VALIDATOR = None


def _xsd_validator():
    """The BPMN 2.0 / DMN schemas shipped with SpiffWorkflow, compiled once."""
    global _VALIDATOR
    if _VALIDATOR is None:
        _VALIDATOR = BpmnValidator()
    return _VALIDATOR


def _parse_spec(filename: str, bpmn_text: str, dmn_texts: list[str], process_id: str, validate: bool = False):
    parser = CityParser(validator=_xsd_validator() if validate else None)
    try:
        for text in dmn_texts:
            parser.add_dmn_xml(load_xml(text, "dmn"), filename="dmn")
        parser.add_bpmn_xml(load_xml(bpmn_text, filename), filename=filename)
        spec = parser.get_spec(process_id)
        subprocess_specs = parser.get_subprocess_specs(process_id)
    except ValidationException as exc:
        element = getattr(exc, "id", None) or getattr(exc, "name", None)
        line = getattr(exc, "line_number", None)
        where = f" (line {line})" if line else ""
        raise DefinitionError(filename, [(element, str(exc).split("\n")[0] + where)]) from None
    except DefinitionError:
        raise
    except Exception as exc:  # the library raises assorted errors on malformed models
        raise DefinitionError(filename, [(None, f"{type(exc).__name__}: {exc}")]) from None
    for s in (spec, *subprocess_specs.values()):
        use_engine_clock(s)
    return spec, subprocess_specs
