"""APScheduler drives time: the timer sweeper and the district's calendar jobs.

SpiffWorkflow never fires timers itself. The sweeper asks the database which instances
have a timer due (`next_timer_at`), so a timer that fell due while the server was down
fires once on the first sweep after start-up: the due state lives in the database, not
in the scheduler's memory. On PostgreSQL the sweep claims rows with SKIP LOCKED, so
several workers can run it side by side.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from engine.domain import attendance, gas, sightings

__all__ = ["engine_now_for_scheduler", "gas_due_job", "start_scheduler"]

log = logging.getLogger("cityloop.scheduler")


def _sweep(engine) -> None:
    try:
        n = engine.fire_due_timers()
        if n:
            log.info("fired timers on %d instance(s)", n)
    except Exception:  # keep the scheduler alive; the next sweep retries
        log.exception("timer sweep failed")


def _plan_shifts(engine) -> None:
    today = engine.clock().astimezone(attendance.DISTRICT_TZ).date()
    for day in (today, today + timedelta(days=1)):
        try:
            attendance.plan_day(engine, day)
        except Exception:
            log.exception("planning shifts for %s failed", day)


def gas_due_job(engine) -> None:
    """Calendar job (06:00 district time): open the inspections of households due."""
    try:
        n = gas.start_due_inspections(engine)
        log.info("opened %d due gas inspection(s)", n)
    except Exception:
        log.exception("gas due-list job failed")


def _prune_sightings(engine) -> None:
    """Good badge sightings only serve the clone and duplicate checks for a few days; flagged
    ones are evidence and stay (engine.domain.sightings.prune)."""
    try:
        with engine.transaction() as s:
            n = sightings.prune(s, engine.clock())
        log.info("pruned %d old badge sighting(s)", n)
    except Exception:
        log.exception("pruning badge sightings failed")


def _prune_login_attempts(engine) -> None:
    """Failed log-ins older than the limiter's window (engine.auth.service.prune_login_attempts)."""
    try:
        from engine.auth.service import prune_login_attempts
        with engine.transaction() as s:
            prune_login_attempts(s, engine.clock())
    except Exception:
        log.exception("pruning failed log-ins failed")


def _release_stranded(engine, photos_exist) -> None:
    """Sync ops left waiting although their photos are stored (sync.server.ops.release_stranded)."""
    try:
        from engine.storage import AttachmentStore
        from sync.server.ops import release_stranded
        n = release_stranded(engine, exists=photos_exist or AttachmentStore().exists)
        if n:
            log.info("applied %d sync op(s) whose photos had arrived", n)
    except Exception:
        log.exception("releasing stranded sync ops failed")


def start_scheduler(engine, sweep_seconds: float = 5.0, calendar_jobs: bool = True,
                    photos_exist: Callable[[str], bool] | None = None,
                    stranded_seconds: float = 60.0) -> BackgroundScheduler:
    """Start the background scheduler. `scheduler.shutdown()` stops it. `photos_exist(sha256)`:
    whether the server's attachment store holds a photo (the app passes its own store; by
    default the one under CITYLOOP_DATA)."""
    sched = BackgroundScheduler(timezone=attendance.DISTRICT_TZ, job_defaults={
        # One run per missed window, never a backlog of runs after downtime.
        "coalesce": True, "max_instances": 1})
    sched.add_job(_sweep, IntervalTrigger(seconds=sweep_seconds), args=[engine], id="timer-sweep",
                  misfire_grace_time=None, next_run_time=engine_now_for_scheduler())
    sched.add_job(_release_stranded, IntervalTrigger(seconds=stranded_seconds), args=[engine, photos_exist],
                  id="sync-stranded",
                  misfire_grace_time=None)
    sched.add_job(_prune_login_attempts, IntervalTrigger(minutes=15), args=[engine], id="prune-logins",
                  misfire_grace_time=None)
    if calendar_jobs:
        # Calendar jobs may run late (misfire grace of hours) but run once; they are idempotent.
        sched.add_job(_plan_shifts, CronTrigger(hour=0, minute=5), args=[engine], id="plan-shifts",
                      misfire_grace_time=6 * 3600, next_run_time=engine_now_for_scheduler())
        sched.add_job(gas_due_job, CronTrigger(hour=6, minute=0), args=[engine], id="gas-due",
                      misfire_grace_time=12 * 3600)
        sched.add_job(_prune_sightings, CronTrigger(hour=3, minute=30), args=[engine], id="prune-sightings",
                      misfire_grace_time=12 * 3600)
    sched.start()
    return sched


def engine_now_for_scheduler():
    """Run the first sweep right away (APScheduler's own clock is the wall clock)."""
    from datetime import datetime
    return datetime.now(attendance.DISTRICT_TZ)
