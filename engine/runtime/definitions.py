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
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from sqlalchemy import func
from sqlmodel import Session, select

from engine import forms
from engine.bpmn.parser import CAMUNDA_NS, CityParser, form_ref_of
from engine.bpmn.specs import ignore_data_associations, use_engine_clock
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


def _processes(root) -> list[tuple[str, dict]]:
    """(process id, what it references) of each executable process of a BPMN file: a
    collaboration with several pools gives one definition per process."""
    processes = [p for p in root.findall(f"{{{BPMN_NS}}}process") if p.get("isExecutable", "true") != "false"]
    if not processes:
        raise DefinitionError("", [(None, 'no executable process in this file (mark a pool\'s process '
                                          'isExecutable="true")')])
    found = []
    for proc in processes:
        dmn = {el.get(f"{{{CAMUNDA_NS}}}decisionRef") for el in proc.iter(f"{{{BPMN_NS}}}businessRuleTask")}
        frm = {form_ref_of(el) for el in proc.iter(f"{{{BPMN_NS}}}userTask")}
        calls = []
        for el in proc.iter(f"{{{BPMN_NS}}}callActivity"):
            version = el.get(f"{{{CAMUNDA_NS}}}calledElementVersion")
            bound = el.get(f"{{{CAMUNDA_NS}}}calledElementBinding") == "version"
            calls.append({"key": el.get("calledElement"), "element": el.get("id"),
                          "version": int(version) if bound and version and version.isdigit() else None})
        found.append((proc.get("id"), {"dmn": sorted(d for d in dmn if d), "form": sorted(f for f in frm if f),
                                       "calls": calls}))
    return found


def _refs_of(content: str, filename: str, key: str) -> dict:
    """What process `key` of a stored file references (as `_processes` reads it)."""
    for k, refs in _processes(load_xml(content, filename)):
        if k == key:
            return refs
    raise KeyError(f"process {key!r} is not in {filename}")


class DefinitionStore:
    def __init__(self, operations: Iterable[str]):
        self.operations = frozenset(operations)
        self._specs: dict[int, object] = {}
        self._forms: dict[int, forms.Form] = {}
        self._pins: dict[int, dict] = {}
        self._starts: dict[tuple, dict] = {}
        self._called: dict[tuple, int | None] = {}
        self._versions: dict[int, int] = {}
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
                processes = _processes(root)
            except DefinitionError as exc:
                raise DefinitionError(filename, exc.problems) from None
            for key, refs in processes:
                candidates.append(_Candidate("bpmn", key, filename, content, refs))
        _no_duplicates(candidates)
        self._check_calls(session, candidates)
        # Parse each process with the decisions and called processes it will be pinned to:
        # the library's own checks (structure, XSD-level errors, gateway defaults) run before
        # anything is stored.
        for c in candidates:
            if c.kind == "bpmn":
                bpmn_texts, dmn_texts = self._candidate_sources(session, c, candidates)
                _parse_spec(c.filename, c.content, bpmn_texts, dmn_texts, c.key, validate=True)
        return self._store(session, candidates, actor, now)

    # ---- call activities ------------------------------------------------------------
    def _check_calls(self, session, candidates: list[_Candidate]) -> None:
        """Every called process is deployed (or deployed now), a pinned version exists, and no
        process calls itself, directly or through others."""
        deploying = {c.key: c for c in candidates if c.kind == "bpmn"}
        stored = {row.key: row for row in self._latest_rows(session, "bpmn")}
        for c in deploying.values():
            problems = []
            for call in c.refs["calls"]:
                key, version = call["key"], call["version"]
                if key not in deploying and key not in stored:
                    problems.append((call["element"], f"unknown called process {key!r}: deploy it first or "
                                                      "in the same deploy"))
                elif version is not None:
                    same_file = key in deploying and deploying[key].content == c.content
                    if same_file:
                        problems.append((call["element"], f"process {key!r} is in the same file and is called at "
                                                          "the file's version: remove calledElementVersion"))
                    elif self._version_row(session, key, version) is None:
                        problems.append((call["element"], f"process {key!r} has no version {version}"))
            if problems:
                raise DefinitionError(c.filename, problems)

        def callees(key: str) -> list[str]:
            if key in deploying:
                return [call["key"] for call in deploying[key].refs["calls"]]
            row = stored.get(key)
            return sorted(json.loads(row.pins).get("bpmn", {})) if row is not None else []

        for c in deploying.values():
            path, stack = [c.key], [iter(callees(c.key))]
            while stack:
                nxt = next(stack[-1], None)
                if nxt is None:
                    stack.pop()
                    path.pop()
                    continue
                if nxt == c.key:    # name the call activity of c that starts the circle
                    first_hop = path[1] if len(path) > 1 else nxt
                    element = next((x["element"] for x in c.refs["calls"] if x["key"] == first_hop), None)
                    raise DefinitionError(c.filename, [(element, "recursive call: " + " -> ".join([*path, nxt])
                                                        + "; a process may not call itself, directly or "
                                                          "through others (draw a loop back instead)")])
                if nxt in path or len(path) > 20:
                    continue
                path.append(nxt)
                stack.append(iter(callees(nxt)))

    def _called_row(self, session, call: dict) -> Definition:
        """The stored version a call (one of a process's refs["calls"]) is pinned to now."""
        if call["version"] is not None:
            return self._version_row(session, call["key"], call["version"])
        return self._latest(session, "bpmn", call["key"])

    def _version_row(self, session, key: str, version: int) -> Definition | None:
        return session.exec(select(Definition).where(Definition.kind == "bpmn", Definition.key == key,
                                                     Definition.version == version)).first()

    def _candidate_sources(self, session, c: _Candidate, candidates: list[_Candidate]) -> tuple[list, list]:
        """(other BPMN texts, DMN texts) a candidate process is parsed with, as it will be pinned."""
        by_key = {(x.kind, x.key): x for x in candidates}
        bpmn: dict[str, str] = {}
        dmn: dict[str, str] = {}
        todo, visited, stored = [c], set(), set()
        while todo:
            x = todo.pop()
            if x.key in visited:
                continue
            visited.add(x.key)
            bpmn.setdefault(_sha(x.content), x.content)
            for d in x.refs["dmn"]:
                text = by_key[("dmn", d)].content if ("dmn", d) in by_key else self._latest(session, "dmn", d).content
                dmn.setdefault(_sha(text), text)
            for call in x.refs["calls"]:
                callee = by_key.get(("bpmn", call["key"])) if call["version"] is None else None
                if callee is not None:
                    todo.append(callee)
                    continue
                self._stored_sources(session, self._called_row(session, call).id, bpmn, dmn, stored)
        bpmn.pop(_sha(c.content), None)
        return list(bpmn.values()), list(dmn.values())

    def _stored_sources(self, session, definition_id: int, bpmn: dict, dmn: dict, visited: set) -> None:
        """Add a stored process version's file and, through its pins, its decisions and called
        processes (each version once)."""
        if definition_id in visited:
            return
        visited.add(definition_id)
        row = session.get(Definition, definition_id)
        bpmn.setdefault(_sha(row.content), row.content)
        pins = self._pins_of(session, definition_id)
        for i in pins.get("dmn", {}).values():
            text = session.get(Definition, i).content
            dmn.setdefault(_sha(text), text)
        for i in pins.get("bpmn", {}).values():
            self._stored_sources(session, i, bpmn, dmn, visited)

    def _store(self, session, candidates, actor, now) -> list[Deployed]:
        results: list[Deployed] = []
        changed_refs: dict[str, set] = {"dmn": set(), "form": set()}
        for kind in ("form", "dmn"):
            for c in (c for c in candidates if c.kind == kind):
                d, changed = self._put(session, c, "{}", actor, now)
                results.append(d)
                if changed:
                    changed_refs[kind].add(c.key)
        processes = {c.key: c for c in candidates if c.kind == "bpmn"}
        # A new decision table, form or called process reaches new instances: re-pin the
        # processes using it (and, in turn, their callers).
        latest = self._latest_rows(session, "bpmn")
        grown = True
        while grown:
            grown = False
            for row in latest:
                if row.key in processes:
                    continue
                pins = json.loads(row.pins)
                refs = _refs_of(row.content, row.filename, row.key)
                if (set(pins.get("dmn", {})) & changed_refs["dmn"] or set(pins.get("form", {})) & changed_refs["form"]
                        or any(call["version"] is None and call["key"] in processes for call in refs["calls"])):
                    processes[row.key] = _Candidate("bpmn", row.key, row.filename, row.content, refs)
                    grown = True
        for c in _callees_first(processes):
            pins = {kind: {k: self._latest(session, kind, k).id for k in c.refs[kind]} for kind in ("dmn", "form")}
            calls = {}
            for call in c.refs["calls"]:
                calls[call["key"]] = self._called_row(session, call).id
            if calls:
                pins["bpmn"] = calls
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

    def _pins_of(self, session, definition_id: int) -> dict:
        pins = self._pins.get(definition_id)
        if pins is None:
            pins = json.loads(session.exec(select(Definition.pins).where(Definition.id == definition_id)).one())
            with self._lock:
                self._pins[definition_id] = pins
        return pins

    def pinned(self, session, definition_id: int, kind: str, key: str) -> int | None:
        """Id of the decision, form or called process ("dmn", "form", "bpmn") a process
        version was deployed with (cached: immutable)."""
        return self._pins_of(session, definition_id).get(kind, {}).get(key)

    def pinned_form(self, session, definition_id: int, key: str) -> int | None:
        """Id of form `key` as a process version uses it: its own pin, else that of a
        process it calls (whose user tasks run in the caller's instance)."""
        return self.pinned_deep(session, definition_id, "form", key)

    def pinned_deep(self, session, definition_id: int, kind: str, key: str) -> int | None:
        """Id of the `kind` definition `key` a process version runs with: its own pin, else,
        nearest first, the pin of a process it calls."""
        todo, seen = [definition_id], set()
        while todo:
            current = todo.pop(0)
            if current in seen:
                continue
            seen.add(current)
            pins = self._pins_of(session, current)
            found = pins.get(kind, {}).get(key)
            if found is not None:
                return found
            todo.extend(pins.get("bpmn", {}).values())
        return None

    def called_version(self, session, definition_id: int, key: str) -> int | None:
        """The version number of process `key` as a process version calls it (cached: immutable)."""
        cache_key = (definition_id, key)
        if cache_key not in self._called:
            pinned = self.pinned_deep(session, definition_id, "bpmn", key)
            version = (session.exec(select(Definition.version).where(Definition.id == pinned)).one()
                       if pinned is not None else None)
            with self._lock:
                self._called[cache_key] = version
        return self._called[cache_key]

    def message_starts(self, session) -> dict[str, list[str]]:
        """Message name -> the processes (newest versions) whose start event catches it."""
        latest = tuple(session.exec(select(Definition.key, func.max(Definition.id)).where(Definition.kind == "bpmn")
                                    .group_by(Definition.key).order_by(Definition.key)).all())
        cached = self._starts.get(latest)
        if cached is not None:
            return cached
        found: dict[str, list[str]] = {}
        for key, definition_id in latest:
            spec, _ = self.spec(session, definition_id)
            for start in spec.start.outputs:
                definition = getattr(start, "event_definition", None)
                if isinstance(definition, MessageEventDefinition):
                    found.setdefault(definition.name, []).append(key)
        with self._lock:
            self._starts = {latest: found}
        return found

    def version_of(self, session, definition_id: int) -> Definition:
        return session.get(Definition, definition_id)

    def version_number(self, session, definition_id: int) -> int:
        """The version of a deployed definition, read once (a definition's row never changes;
        reading it through the ORM loaded its whole content: about 0.28 ms a call)."""
        cached = self._versions.get(definition_id)
        if cached is None:
            cached = session.exec(select(Definition.version).where(Definition.id == definition_id)).one()
            with self._lock:
                self._versions[definition_id] = cached
        return cached

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
        bpmn: dict[str, str] = {}
        dmn: dict[str, str] = {}
        self._stored_sources(session, definition_id, bpmn, dmn, set())
        bpmn.pop(_sha(row.content), None)
        spec = _parse_spec(row.filename, row.content, list(bpmn.values()), list(dmn.values()), row.key)
        with self._lock:
            self._specs[definition_id] = spec
        return spec

    def form_for(self, session, process_definition_id: int, form_ref: str) -> tuple[int, forms.Form] | None:
        form_id = self.pinned_form(session, process_definition_id, form_ref)
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


def _parse_spec(filename: str, bpmn_text: str, called_texts: list[str], dmn_texts: list[str], process_id: str,
                validate: bool = False):
    """(spec, subprocess specs) of `process_id` in `bpmn_text`, with the files of the processes
    it calls and the decision tables they all use."""
    parser = CityParser(validator=_xsd_validator() if validate else None)
    try:
        for text in dmn_texts:
            parser.add_dmn_xml(load_xml(text, "dmn"), filename="dmn")
        for text in called_texts:
            parser.add_bpmn_xml(load_xml(text, "called process"), filename="called process")
        parser.add_bpmn_xml(load_xml(bpmn_text, filename), filename=filename)
        spec = parser.get_spec(process_id)
        subprocess_specs = parser.get_subprocess_specs(process_id)
    except ValidationException as exc:
        element = getattr(exc, "id", None) or getattr(exc, "name", None) or None   # ('' for schema errors)
        line = getattr(exc, "line_number", None)
        where = f" (line {line})" if line else ""
        raise DefinitionError(filename, [(element, str(exc).split("\n")[0] + where)]) from None
    except DefinitionError:
        raise
    except Exception as exc:  # the library raises assorted errors on malformed models
        raise DefinitionError(filename, [(None, f"{type(exc).__name__}: {exc}")]) from None
    for s in (spec, *subprocess_specs.values()):
        use_engine_clock(s)
        ignore_data_associations(s)
    return spec, subprocess_specs


def _callees_first(processes: dict[str, _Candidate]) -> list[_Candidate]:
    """The processes to store, each after the ones it calls (so its pins name their new versions)."""
    ordered: list[_Candidate] = []
    placed: set[str] = set()

    def place(key: str, depth: int = 0) -> None:
        if key in placed or key not in processes or depth > len(processes):
            return
        placed.add(key)
        for call in processes[key].refs["calls"]:
            place(call["key"], depth + 1)
        ordered.append(processes[key])

    for key in sorted(processes):
        place(key)
    return ordered
