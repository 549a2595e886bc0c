"""The case engine: deploy, start, complete, message and timer steps, one transaction each.

Every change to an instance loads its workflow, runs SpiffWorkflow with the safe script
engine, writes the workflow back with an optimistic version check, and refreshes the side
tables (open tasks, awaited messages, next timer) and the audit log in the same
transaction. A step the process cannot take is rolled back and parked as an incident with
what the caller submitted (engine.runtime.incidents), to be retried or resolved.
"""
from __future__ import annotations

import copy
import json
import logging
import weakref
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Mapping
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.task import TaskState
from sqlalchemy import Connection, bindparam, update
from sqlmodel import Session, select

from engine import forms
from engine.bpmn import expressions, serializer, spiff
from engine.bpmn.calls import business_key_of
from engine.bpmn.script_engine import SafeScriptEngine
from engine.clock import from_db, to_db, utcnow
from engine.db import direct
from engine.db.models import AuditEvent, Instance, OpenTask
from engine.runtime import incidents, state
from engine.runtime.audit import audit, flush_audit, forget_since, mark
from engine.runtime.data import DataError, check_plain
from engine.runtime.definitions import DefinitionStore
from engine.runtime.errors import (
    Actor,
    Conflict,
    EngineError,
    Forbidden,
    NotFound,
    ProcessError,
    TaskGone,
    TaskTaken,
    ValidationFailed,
    VersionConflict,
)
from engine.runtime.live import LiveWorkflows
from engine.runtime.messages import deliver, forward
from engine.runtime.operations import OpContext, OperationError, Registry, drop_deferred, run_deferred
from engine.runtime.rows import (
    DELETE_TASK,
    SAVE_COMPLETED,
    SAVE_INSTANCE,
    InstanceRow,
    fetch_instance,
    fetch_open_task,
    instance_query,
    start_instance,
)
from engine.runtime.tasks import TaskIndex

log = logging.getLogger("cityloop.engine")
INCIDENT_RETRY = timedelta(minutes=5)


class CaseEngine:
    def __init__(self, db, registry: Registry, clock: Callable[[], datetime] = utcnow, live_workflows: int = 1000):
        self.db = db
        self._reader = db.execution_options(isolation_level="AUTOCOMMIT") if db.dialect.name == "postgresql" else db
        self.registry = registry
        self.clock = clock
        self.definitions = DefinitionStore(registry.names())
        self.tasks = TaskIndex(self)
        self.live = LiveWorkflows(live_workflows)   # this worker's workflows of its last steps
        # a workflow taken from `live` -> its scan at its save, until its step begins
        self._scanned: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # Called as fn(session, instance, open_task) when a human task opens (domain state mirrors).
        self.task_listeners: list[Callable] = []

    # ---- transactions ---------------------------------------------------------------
    @contextmanager
    def transaction(self, session: Session | None = None, write: bool = True) -> Iterator[Session]:
        """A new transaction, or the caller's when an operation calls back into the engine."""
        if session is not None:
            yield session
            return
        options = {"write": write}
        pg = self.db.dialect.name == "postgresql"
        if pg:
            # Reads need no BEGIN/COMMIT round trips: each statement sees committed data. A
            # write's BEGIN goes with its first statement (engine.db.direct.begin).
            options["isolation_level"] = "AUTOCOMMIT"
        with Session(self.db, expire_on_commit=False, autoflush=False) as s:
            with s.begin():
                conn = s.connection(execution_options=options)
                if write and pg:
                    direct.begin(conn)
                yield s
                flush_audit(s)
                s.flush()       # (ORM changes too go before the COMMIT)
                # the step's writes, in one pipeline on PostgreSQL, with the COMMIT
                direct.finish(s.connection(), commit=write and pg)
            self.live.committed(s.info)     # (reached only once the transaction has committed)

    def record_event(self, s: Session, instance: InstanceRow | None, actor: str, kind: str, element=None,
                     business_key: str | None = None, **detail):
        """An audit event of `instance`, written with the transaction, under the instance's
        business key or `business_key` (that of a called process with its own)."""
        audit(s, self.clock(), instance.id if instance else None,
              business_key or (instance.business_key if instance else None), actor, kind, element, detail)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for a few reads of committed data, without an ORM session (for the
        statements of engine.db.direct): on PostgreSQL in autocommit, so no BEGIN/ROLLBACK
        round trips. (Measured, one select by id: 200-230 us of CPU in a read transaction of
        a Session, 118 us here.)"""
        with self._reader.connect() as conn:
            yield conn

    # ---- deploy -----------------------------------------------------------------------
    def deploy(self, files: list[tuple[str, bytes | str]], actor: Actor):
        with self.transaction() as s:
            deployed = self.definitions.deploy(s, files, actor.id, self.clock())
            for d in deployed:
                if d.changed:
                    self.record_event(s, None, actor.id, "deployed", element=d.key, definition=d.kind,
                                      version=d.version)
            return deployed

    # ---- workflow load/save -------------------------------------------------------------
    def _script_engine(self, s: Session, row: InstanceRow, actor: Actor) -> SafeScriptEngine:
        def run_operation(task, topic: str, params: Mapping[str, str]) -> Any:
            if topic not in self.registry:
                raise OperationError(f"unknown operation {topic!r}")
            ctx = OpContext(session=s, now=self.clock(), instance_id=row.id,
                            business_key=business_key_of(task, row.business_key),
                            process_key=row.process_key, task_id=str(task.id),
                            element=task.task_spec.bpmn_id or task.task_spec.name, actor=actor.id, engine=self)
            result = self.registry.get(topic)(ctx, task.data, params)
            if result:
                task.data.update(check_plain(dict(result), f"result of {topic}"))
            return True
        return SafeScriptEngine(self.clock, run_operation)

    def load(self, s: Session, row: InstanceRow, actor: Actor, reuse: bool = True) -> BpmnWorkflow:
        """The instance's workflow: this worker's live copy when it saved the row's current
        version (`reuse`, for a step, which then owns it), else deserialized from the row."""
        kept = self.live.take(row.id, row.version) if reuse else None
        if kept is not None:
            wf, self._scanned[wf] = kept    # (the step starts from the scan of its save)
        else:
            spec, subprocess_specs = self.definitions.spec(s, row.definition_id)
            wf = serializer.loads(row.workflow, spec, subprocess_specs)
        # A deserialized workflow carries the library's eval-based engine: replace it, always.
        wf.script_engine = self._script_engine(s, row, actor)
        return wf

    def _advance(self, s: Session, row: InstanceRow, wf: BpmnWorkflow, actor: Actor,
                 mutate: Callable[[BpmnWorkflow], None] | None) -> None:
        # (no mutation: a fresh workflow's first step; nothing of it is in the side tables yet)
        before = state.EMPTY if mutate is None else (self._scanned.pop(wf, None) or state.scan(wf))
        events = mark(s)
        try:
            if mutate is not None:
                mutate(wf)
            spiff.engine_steps(wf)
        except BaseException:   # (the caller's transaction may go on: nothing of this step stays)
            drop_deferred(s)
            forget_since(s, events)
            raise
        run_deferred(s)
        for task_id, (element, due) in before.timers.items():
            t = spiff.find_task(wf, task_id)        # (also in a called process)
            if t is not None and t.state == TaskState.COMPLETED:
                self.record_event(s, row, actor.id, "timer_fired", element=element, due=due.isoformat(),
                                  business_key=business_key_of(t, row.business_key))
        self._record_calls(s, row, actor, before.calls, state.calls(wf))
        thrown = wf.get_events()
        serializer.compact(wf)
        self._save(s, row, wf, actor, before)
        if thrown:
            forward(self, s, row, thrown, actor)

    def _record_calls(self, s: Session, row: InstanceRow, actor: Actor, before: dict, after: dict) -> None:
        """The parent's timeline shows each called process starting and ending (the child runs
        inside the parent's instance, at the version pinned when the parent was deployed)."""
        for task_id, (element, called, done) in after.items():
            was = before.get(task_id)
            started, ended = was is None, done and (was is None or not was[2])
            if not (started or ended):
                continue
            version = self.definitions.called_version(s, row.definition_id, called)
            if started:
                self.record_event(s, row, actor.id, "call_started", element=element, process=called, version=version)
            if ended:
                self.record_event(s, row, actor.id, "call_completed", element=element, process=called,
                                  version=version)

    def _save(self, s: Session, row: InstanceRow, wf: BpmnWorkflow, actor: Actor, before: state.Scan) -> None:
        now = self.clock()
        done = wf.is_completed()
        after = state.scan(wf)
        next_timer = None if done else after.next_timer
        values = dict(workflow=serializer.dumps(wf), version=row.version + 1, updated_at=to_db(now),
                      next_timer_at=to_db(next_timer), state="completed" if done else "running", error=None)
        params = {**values, "row_id": row.id, "row_version": row.version}
        if done:
            values["completed_at"] = params["completed_at"] = to_db(now)

        def conflict(count: int, instance_id=row.id) -> Conflict:
            return Conflict(f"instance {instance_id} was changed by someone else; reload and retry")
        # sent with the step's other writes (engine.db.direct.defer); the row count is checked before
        # the commit (on PostgreSQL the row is locked for the step: a safety net)
        direct.defer(s.connection(), SAVE_COMPLETED if done else SAVE_INSTANCE, params, expect=1, otherwise=conflict)
        if row.error is not None:     # an earlier step failed (a timer, say): this one went through
            incidents.close_instance(s, row.id, now, actor.id)
        for k, v in values.items():
            setattr(row, k, v)
        self.tasks.sync(s, row, wf, before, after)
        if not done:
            self.live.saved(s.info, row.id, row.version, wf, after)
        if done:
            self.record_event(s, row, actor.id, "instance_completed")

    # ---- start --------------------------------------------------------------------------
    def start(self, process_key: str, data: Mapping[str, Any], actor: Actor, business_key: str | None = None,
              session: Session | None = None) -> int:
        try:
            data = check_plain(dict(data), "start data")
        except DataError as exc:
            raise ValidationFailed({exc.field: str(exc)}) from None
        with self.transaction(session) as s:
            started = start_instance(s, process_key, business_key, to_db(self.clock()))
            if started is None:
                raise NotFound(f"no process {process_key!r} is deployed")
            row, version = started
            self.record_event(s, row, actor.id, "instance_started", element=process_key, version=version, data=data)
            try:
                # a failing first step leaves the instance (and the caller's rows)
                with direct.savepoint(s, "first_step"):
                    self.run_step(s, row, self._fresh(s, row, data, actor), actor, None)
            except ProcessError as exc:
                self._park_start(s, row, version, data, actor, exc)
            return row.id

    def _fresh(self, s: Session, row: InstanceRow, data: dict, actor: Actor) -> BpmnWorkflow:
        """A new workflow of the instance's process version, holding its start data."""
        spec, subprocess_specs = self.definitions.spec(s, row.definition_id)
        wf = BpmnWorkflow(spec, subprocess_specs)
        wf.script_engine = self._script_engine(s, row, actor)
        for t in wf.get_tasks(state=TaskState.READY):
            t.data.update(data)
        return wf

    def _park_start(self, s: Session, row: InstanceRow, version: int, data: dict, actor: Actor,
                    exc: ProcessError) -> None:
        """The first step failed: keep the instance, not run, in state "incident"."""
        log.warning("process %s v%s could not start (instance %s): %s", row.process_key, version, row.id, exc)
        workflow = serializer.dumps(self._fresh(s, row, data, actor))   # as it stands: started, nothing run
        s.connection().execute(update(Instance).where(Instance.id == row.id)
                               .values(state="incident", error=str(exc)[:2000], updated_at=to_db(self.clock()),
                                       workflow=workflow))
        exc.incident = self._open_incident(s, row, actor, "start", exc.element, exc.detail, version=version,
                                           submission={"data": data})

    def run_step(self, s, row, wf, actor, mutate) -> None:
        """Advance a loaded workflow (after `mutate`) and save it; a failure the process
        causes is a ProcessError naming the element, and nothing of the step stays. `mutate`
        None is a fresh workflow's first step (engine.start)."""
        try:
            self._advance(s, row, wf, actor, mutate)
        except (SpiffWorkflowException, OperationError, expressions.ExpressionError, DataError) as exc:
            raise ProcessError(_describe(exc), element=_element_of(exc)) from None

    # ---- human tasks ----------------------------------------------------------------------
    def claim(self, task_id: str, actor: Actor, release: bool = False) -> None:
        with self.transaction() as s:
            ot, row = self.tasks.authorized(s, task_id, actor)
            if release and ot["claimed_by"] != actor.id:
                raise Conflict("you have not claimed this task")
            if not release and ot["claimed_by"] not in (None, actor.id):
                raise TaskTaken(f"task already claimed by {ot['claimed_by']}")
            changed = s.connection().execute(update(OpenTask).where(OpenTask.id == task_id)
                                             .values(claimed_by=None if release else actor.id))
            if changed.rowcount != 1:   # completed by a step we queued behind (it held the instance)
                raise TaskGone(f"task {task_id} is not open (already completed, cancelled or unknown)")
            self.record_event(s, row, actor.id, "task_released" if release else "task_claimed", element=ot["name"])

    def complete(self, task_id: str, actor: Actor, data: Mapping[str, Any],
                 expected_version: int | None = None,
                 also: Callable[[Session, dict, InstanceRow], None] | None = None,
                 check: Callable[[Session, dict, Any, dict], None] | None = None) -> dict:
        """Complete a ready user task with form data. Returns the instance's new position.

        In one transaction: who may (403/409) first, then the form (422 per field), then
        `check(session, open_task, form, clean_data)` for what only the caller knows (e.g.
        that referenced photos exist; it raises ValidationFailed), then the step, then
        `also(session, open_task, instance)` (e.g. linking those photos to the order; the
        instance row as saved), so all of it happens or none of it does."""
        submitted: dict = {}
        try:
            with self.transaction() as s:
                ot, row = self.tasks.authorized(s, task_id, actor)
                if expected_version is not None and row.version != expected_version:
                    raise VersionConflict(f"instance is at version {row.version}, not {expected_version}")
                clean, form = self._validated(s, row, ot, data)
                if check is not None:
                    check(s, ot, form, clean)
                submitted.update(task=dict(ot), data=clean, version=row.version)
                return self._complete_step(s, ot, row, clean, actor, also)
        except ProcessError as exc:
            if submitted:
                self._park_task(submitted, actor, exc)
            raise

    def _complete_step(self, s: Session, ot: Mapping, row: InstanceRow, clean: dict, actor: Actor,
                       also: Callable | None) -> dict:
        wf = self.load(s, row, actor)
        task_id = ot["id"]

        def run(wf: BpmnWorkflow) -> None:
            task = spiff.find_task(wf, UUID(task_id))
            if task is None or task.state != TaskState.READY:
                raise TaskGone("task is no longer open")
            task.data.update(clean)
            task.run()

        self.record_event(s, row, actor.id, "task_completed", element=ot["name"], title=ot["title"], data=clean,
                          business_key=ot["business_key"])
        self.run_step(s, row, wf, actor, run)
        if also is not None:
            also(s, ot, row)
        return {"instance_id": row.id, "state": row.state, "version": row.version, "position": state.position(wf)}

    def _park_task(self, submitted: dict, actor: Actor, exc: ProcessError) -> None:
        """The step after a completion failed (and was rolled back): keep the submission in an
        incident and take the task out of the lists until it is retried or resolved."""
        ot = submitted["task"]
        log.warning("task %s (%s) of instance %s could not be completed: %s", ot["id"], ot["name"],
                    ot["instance_id"], exc)
        with self.transaction() as s:
            # the instance first, as every step locks it (then the task): no deadlock with a step
            row = fetch_instance(s, ot["instance_id"], lock=True)
            if row is None or fetch_open_task(s, ot["id"], lock=True) is None:
                return   # someone else moved it on meanwhile: nothing to park
            direct.execute(s.connection(), DELETE_TASK, {"id": ot["id"]})
            s.connection().execute(update(Instance).where(Instance.id == row.id).values(error=str(exc)[:2000]))
            exc.incident = self._open_incident(s, row, actor, "task", exc.element or ot["name"], exc.detail,
                                               submission={"task": _task_summary(ot), "data": submitted["data"],
                                                           "instance_version": submitted["version"]})

    def _validated(self, s: Session, row: InstanceRow, ot, data: Mapping[str, Any]) -> tuple[dict, Any]:
        """(clean data, the task's form or None)."""
        if not isinstance(data, Mapping):
            raise ValidationFailed({"_": "form data must be an object"})
        form = None
        if ot["form_ref"]:
            found = self.definitions.form_for(s, row.definition_id, ot["form_ref"])
            if found is None:
                raise ProcessError(f"form {ot['form_ref']!r} is not deployed with this process version",
                                   element=ot["name"])
            form = found[1]
            clean, errors = forms.validate_submission(form, data)
            if errors:
                raise ValidationFailed(errors)
        else:
            clean = dict(data)
        try:
            return check_plain(clean, "form data"), form
        except DataError as exc:
            raise ValidationFailed({exc.field: str(exc)}) from None

    # ---- messages -------------------------------------------------------------------------
    def send_message(self, name: str, payload: Mapping[str, Any], actor: Actor, *,
                     business_key: str | None = None, instance_id: int | None = None,
                     session: Session | None = None) -> list[int]:
        """Deliver a message to every instance awaiting it (by business key or id)."""
        return list(self.send_messages(name, [payload], actor, business_key=business_key, instance_id=instance_id,
                                       session=session))

    def send_messages(self, name: str, payloads: list[Mapping[str, Any]], actor: Actor, *,
                      business_key: str | None = None, instance_id: int | None = None,
                      session: Session | None = None) -> dict[int, int]:
        """Deliver several messages in order, each instance loaded and saved once (a batch of
        badge check-ins is one step). Returns {instance id: how many it took}."""
        try:
            clean = [check_plain(dict(p), "message payload") for p in payloads]
        except (DataError, TypeError, ValueError) as exc:
            raise ValidationFailed({"payload": str(exc)}) from None
        with self.transaction(session) as s:
            return deliver(self, s, name, clean, actor, business_key, instance_id)

    # ---- timers ---------------------------------------------------------------------------
    def fire_due_timers(self, limit: int = 100) -> int:
        """Advance instances whose next timer is due. Safe to run in several workers."""
        fired, seen = 0, set()
        while fired < limit:
            row_id = None
            try:
                with self.transaction() as s:
                    due = [Instance.state == "running", Instance.next_timer_at <= to_db(self.clock())]
                    if seen:
                        due.append(Instance.id.not_in(seen))
                    pg = s.get_bind().dialect.name == "postgresql"
                    found = s.connection().execute(instance_query(*due, lock=pg, skip_locked=True)
                                                   .order_by(Instance.next_timer_at).limit(1)).first()
                    if found is None:
                        return fired
                    row = InstanceRow(*found)
                    seen.add(row.id)
                    row_id = row.id
                    actor = Actor("timer")
                    wf = self.load(s, row, actor)
                    self.run_step(s, row, wf, actor, lambda wf: wf.refresh_timers())
                    fired += 1
            except Conflict:
                continue  # someone else advanced it first; the next sweep sees its new timer
            except Exception as exc:  # one broken instance must not stop the sweep
                if row_id is None:
                    raise
                log.warning("timer step failed for instance %s: %s", row_id, exc,
                            exc_info=not isinstance(exc, EngineError))
                self.record_incident(row_id, Actor("timer"), str(exc), getattr(exc, "element", None),
                                     retry_at=self.clock() + INCIDENT_RETRY)
        return fired

    def record_incident(self, instance_id: int | None, actor: Actor, message: str, element: str | None,
                        retry_at: datetime | None = None, step: str = "timer") -> int | None:
        """An incident for a step that failed where nothing of the caller's needs keeping (a
        timer, retried by the sweep at `retry_at`; a message, which its sender resends)."""
        if instance_id is None:
            return None
        with self.transaction() as s:
            row = fetch_instance(s, instance_id)
            if row is None:
                return None
            values = {"error": message[:2000]}
            if retry_at is not None:
                values["next_timer_at"] = to_db(retry_at)
            s.execute(update(Instance).where(Instance.id == instance_id).values(**values)
                      .execution_options(synchronize_session=False))
            return self._open_incident(s, row, actor, step, element, message, submission={})

    def _open_incident(self, s: Session, row: InstanceRow, actor: Actor, step: str, element: str | None,
                       message: str, *, submission: dict, version: int | None = None) -> int:
        """Record an incident of `row` (with who sent what, for a retry as them) and its audit
        event; returns its id. `version`: the process version, when the caller knows it."""
        if version is None:
            version = self.definitions.version_number(s, row.definition_id)
        found = incidents.record(s, self.clock(), instance_id=row.id, process_key=row.process_key,
                                 business_key=row.business_key, definition_id=row.definition_id, version=version,
                                 step=step, element=element, message=message, actor=actor.id,
                                 submission={**submission, "actor": actor.id, "groups": sorted(actor.groups)})
        self.record_event(s, row, actor.id, "incident", element=element, incident=found.id, step=step,
                          message=message[:2000])
        return found.id

    # ---- incidents ------------------------------------------------------------------------
    def retry_incident(self, incident_id: int, by: Actor, *, check: Callable | None = None,
                       also: Callable | None = None) -> dict:
        """Take a parked step again: a start on the newest version of its process (the fix);
        a task completion with the form data it was sent, on the instance as it is now; a
        timer at once. Returns the incident (resolved, or open with the new error)."""
        with self.transaction() as s:
            incident = incidents.get_open(s, incident_id)
            sub = json.loads(incident.submission)
            actor = Actor(sub.get("actor") or incident.actor, sub.get("groups") or ())
            row = fetch_instance(s, incident.instance_id, lock=s.get_bind().dialect.name == "postgresql")
            if row is None:
                raise NotFound(f"instance {incident.instance_id} is gone")
            events = mark(s)
            try:
                with direct.savepoint(s, "retry"):
                    self._retry(s, incident, row, sub, actor, check, also)
            except ProcessError as exc:
                forget_since(s, events)   # (the retried step's own events did not happen)
                incidents.failed_again(s, incident, self.clock(), exc.detail if exc.element is None
                                       else f"{exc.element}: {exc.detail}")
                self.record_event(s, row, by.id, "incident_retry_failed", element=exc.element, incident=incident.id)
                return incidents.as_dict(incident)
            incidents.close(s, incident, self.clock(), by.id, "retried")
            self.record_event(s, row, by.id, "incident_retried", element=incident.element, incident=incident.id)
            return incidents.as_dict(incident)

    def _retry(self, s: Session, incident, row: InstanceRow, sub: dict, actor: Actor, check, also) -> None:
        if incident.step == "start":
            if row.state != "incident":
                raise Conflict(f"instance {row.id} is not waiting to start (it is {row.state})")
            definition_id, _version = self.definitions.latest_process(s, row.process_key)
            if definition_id != row.definition_id:
                s.connection().execute(update(Instance).where(Instance.id == row.id)
                                       .values(definition_id=definition_id))
                row.definition_id = definition_id
            self.run_step(s, row, self._fresh(s, row, sub.get("data") or {}, actor), actor, None)
        elif incident.step == "task":
            ot = sub["task"]
            wf = self.load(s, row, actor)
            task = spiff.find_task(wf, UUID(ot["id"]))
            if task is None or task.state != TaskState.READY:
                raise Conflict("the parked task is no longer open in its case; resolve the incident instead")
            form = None
            if ot.get("form_ref"):
                found = self.definitions.form_for(s, row.definition_id, ot["form_ref"])
                form = found[1] if found else None
            if check is not None:
                check(s, ot, form, sub["data"])
            self._complete_step(s, ot, row, sub["data"], actor, also)
        else:   # timer, message: run what is due now
            wf = self.load(s, row, actor)
            self.run_step(s, row, wf, actor, lambda wf: wf.refresh_timers())

    def resolve_incident(self, incident_id: int, by: Actor, note: str) -> dict:
        """An administrator settled it by other means: the parked submission is dropped (it
        stays in the incident for the record) and a parked task is open again."""
        with self.transaction() as s:
            incident = incidents.get_open(s, incident_id)
            row = fetch_instance(s, incident.instance_id)
            if incident.step == "task" and row is not None and row.state == "running":
                ot = json.loads(incident.submission)["task"]
                wf = self.load(s, row, Actor(by.id))
                task = spiff.find_task(wf, UUID(ot["id"]))
                if task is not None and task.state == TaskState.READY and fetch_open_task(s, ot["id"]) is None:
                    self.tasks.reopen(s, row, wf, task)
            incidents.close(s, incident, self.clock(), by.id, "resolved")
            if row is not None:
                self.record_event(s, row, by.id, "incident_resolved", element=incident.element,
                                  incident=incident.id, note=note[:500])
            return incidents.as_dict(incident)

    # ---- reading --------------------------------------------------------------------------
    def instance(self, instance_id: int) -> dict:
        with self.transaction(write=False) as s:
            row = fetch_instance(s, instance_id)
            if row is None:
                raise NotFound(f"no instance {instance_id}")
            kept = self.live.borrow(row.id, row.version)
            if kept is not None:    # (this worker's copy of the row's version: no deserializing)
                try:
                    # (a copy: the data must not change under the caller once a step owns the workflow)
                    position, data = state.position(kept[0]), copy.deepcopy(_last_data(kept[0]))
                finally:
                    self.live.give_back(row.id, row.version, *kept)
            else:
                wf = self.load(s, row, Actor("reader"), reuse=False)
                position, data = state.position(wf), _last_data(wf)
            version = self.definitions.version_number(s, row.definition_id)
            return {"id": row.id, "process_key": row.process_key, "version": version,
                    "definition_id": row.definition_id, "business_key": row.business_key, "state": row.state,
                    "row_version": row.version, "error": row.error, "next_timer_at": from_db(row.next_timer_at),
                    "created_at": from_db(row.created_at), "completed_at": from_db(row.completed_at),
                    "position": position, "data": data}

    def audit(self, instance_id: int | None = None, business_key: str | None = None) -> list[dict]:
        params = {k: v for k, v in (("instance_id", instance_id), ("business_key", business_key)) if v is not None}
        with self.reading() as conn:
            rows = direct.execute(conn, _AUDIT_OF[instance_id is not None, business_key is not None], params)
        return [{"id": e.id, "instance_id": e.instance_id, "at": from_db(e.at), "actor": e.actor,
                 "kind": e.kind, "element": e.element, "detail": json.loads(e.detail)} for e in rows]


_AUDIT = AuditEvent.__table__
# the audit events of an instance, a business key, both or all, oldest first (prebuilt: engine.db.direct)
_AUDIT_OF = {(by_instance, by_key): select(_AUDIT).where(
    *([_AUDIT.c.instance_id == bindparam("instance_id")] if by_instance else []),
    *([_AUDIT.c.business_key == bindparam("business_key")] if by_key else [])).order_by(_AUDIT.c.id)
    for by_instance in (False, True) for by_key in (False, True)}


def _last_data(wf: BpmnWorkflow) -> dict:
    if wf.is_completed():
        return dict(wf.data) or dict(wf.last_task.data if wf.last_task else {})
    tasks = wf.get_tasks(state=TaskState.READY | TaskState.WAITING)
    return dict(tasks[0].data) if tasks else {}


def _describe(exc: Exception) -> str:
    text = str(exc).split("\n")[0]
    return text or type(exc).__name__


def _element_of(exc: Exception) -> str | None:
    task = getattr(exc, "task", None)
    spec = getattr(task, "task_spec", None)
    return getattr(spec, "bpmn_id", None) or getattr(spec, "name", None)


def _task_summary(ot: Mapping) -> dict:
    return {k: ot[k] for k in ("id", "instance_id", "process_key", "business_key", "name", "title", "form_ref")}


__all__ = ["CaseEngine", "Actor", "EngineError", "NotFound", "Conflict", "Forbidden", "ValidationFailed",
           "ProcessError"]
