"""The `cityloop` command: run the engine, seed the demo, deploy and inspect processes.

    cityloop serve --demo          engine + scheduler on DATABASE_URL (or ./data/cityloop.db)
    cityloop demo seed             seed the demo district
    cityloop deploy FILE...        deploy BPMN / DMN / form files
    cityloop processes | operations | tasks --user ID | timers fire | db upgrade

Errors are one line on stderr and a non-zero exit (2 for a refused definition);
set CITYLOOP_DEBUG=1 to see tracebacks.
"""
from __future__ import annotations

import argparse
import getpass
import logging
import signal
import sys
import threading
from datetime import datetime, time, timedelta
from pathlib import Path

from engine import settings

__all__ = ["CliError", "build_parser", "cmd_badge_key", "cmd_badge_register", "cmd_db_upgrade", "cmd_demo_seed",
           "cmd_deploy", "cmd_operations", "cmd_processes", "cmd_serve", "cmd_tasks", "cmd_timers_fire", "main"]

log = logging.getLogger("cityloop")


class CliError(Exception):
    """A mistake on the command line (a missing file, ...)."""


# ---- helpers ---------------------------------------------------------------------------
def _url(args) -> str:
    from engine.db.session import database_url, normalize_url
    return normalize_url(args.db) if args.db else database_url()


def _shown_url(url: str) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url
    return make_url(url).set(password=None).render_as_string(hide_password=False)


def _engine(args):
    """The engine without (re)deploying the bundled processes: read-only commands and
    deploys must never overwrite what a designer deployed."""
    from engine.system import build
    return build(_url(args), deploy_bundled=False)


def _table(rows: list[tuple], header: tuple) -> str:
    rows = [tuple("" if v is None else str(v) for v in r) for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]

    def line(r):
        return "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()
    return "\n".join([line(header)] + [line(r) for r in rows])


def _when(dt) -> str:
    """A stored (UTC) time in the machine's local time."""
    from engine.clock import from_db
    return from_db(dt).astimezone().strftime("%Y-%m-%d %H:%M") if dt else ""


def _cli_actor():
    from engine.runtime.errors import Actor
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return Actor(f"cli:{user}", {"designer"})


def _deploy_missing_bundled(engine, out=print) -> None:
    from engine.system import deploy_missing_bundled
    deployed, differs = deploy_missing_bundled(engine)
    if deployed:
        out("deployed bundled definitions / 已部署内置定义: "
            + ", ".join(f"{d.kind} {d.key} v{d.version}" for d in deployed if d.changed))
    if differs:
        out("note / 提示: " + ", ".join(differs) + " differ from workflows/; kept the deployed versions"
            " (`cityloop deploy workflows/...` updates them) / 已部署版本与 workflows/ 不同，保留已部署版本")


def _facts(engine) -> dict:
    """What the summary and the status line report."""
    from sqlalchemy import func
    from sqlmodel import select

    from engine.db.models import Definition, Instance, OpenTask
    from engine.domain import attendance, gas
    from engine.domain.models import Household, Shift, WorkOrder
    now = engine.clock()
    with engine.transaction() as s:
        versions = {}
        for kind, key, v in s.exec(select(Definition.kind, Definition.key, func.max(Definition.version))
                                   .group_by(Definition.kind, Definition.key)):
            versions.setdefault(kind, []).append(f"{key} v{v}")
        running = dict(s.exec(select(Instance.process_key, func.count()).where(Instance.state == "running")
                              .group_by(Instance.process_key)).all())
        tasks = dict(s.exec(select(OpenTask.process_key, func.count()).group_by(OpenTask.process_key)).all())
        overdue = s.exec(select(func.count()).select_from(WorkOrder)
                         .where(WorkOrder.overdue == True, WorkOrder.state != "closed")).one()  # noqa: E712
        households = s.exec(select(func.count()).select_from(Household)).one()
        due = len(gas.due_households(s, now))
        today = now.astimezone(attendance.DISTRICT_TZ).date()
        start = datetime.combine(today, time(0), attendance.DISTRICT_TZ)
        shifts = list(s.exec(select(Shift.closed).where(Shift.starts_at >= start,
                                                        Shift.starts_at < start + timedelta(days=1))).all())
        next_timer = s.exec(select(func.min(Instance.next_timer_at)).where(Instance.state == "running")).one()
    return {"versions": versions, "running": running, "tasks": tasks, "overdue": overdue,
            "households": households, "due": due, "shifts": len(shifts), "shifts_closed": sum(map(bool, shifts)),
            "next_timer": next_timer}


def _by_process(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none / 无"


# ---- commands --------------------------------------------------------------------------
def cmd_serve(args) -> int:
    from engine.demo import is_seeded, seed_database
    from engine.scheduler import start_scheduler
    sys.stdout.reconfigure(line_buffering=True)
    stop = threading.Event()
    serving = threading.Event()

    def on_signal(signum, _frame):
        stop.set()
        if not serving.is_set():      # still starting up: abandon start-up
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    url = _url(args)
    engine = _engine(args)
    _deploy_missing_bundled(engine)
    if args.demo:
        if is_seeded(engine):
            print("demo: the database already holds a district; not seeding again / 数据库已有演示数据，跳过")
        else:
            print(f"demo: seeding the demo district ({args.households} households) / 正在生成演示数据 ...")
            seed_database(url, households=args.households, progress=lambda m: print("  " + m))
    sched = start_scheduler(engine, sweep_seconds=args.sweep_seconds, calendar_jobs=not args.no_calendar)
    serving.set()
    try:
        f = _facts(engine)
        calendar = ("off / 关闭" if args.no_calendar else
                    f"on: shift planning 00:05, gas due list 06:00 ({settings.current().timezone}) "
                    "/ 开启：00:05 排班，06:00 燃气到期清单")
        print("\n".join([
            "cityloop engine is running / cityloop 引擎运行中",
            f"  database / 数据库:              {_shown_url(url)}",
            f"  processes / 流程:               {', '.join(f['versions'].get('bpmn', [])) or 'none / 无'}",
            f"  decisions / 决策表:             {', '.join(f['versions'].get('dmn', [])) or 'none / 无'}",
            f"  forms / 表单:                   {', '.join(f['versions'].get('form', [])) or 'none / 无'}",
            f"  running instances / 运行中实例: {_by_process(f['running'])}",
            f"  open tasks / 待办任务:          {_by_process(f['tasks'])}",
            f"  overdue orders / 超时工单:      {f['overdue']}",
            f"  households due / 到期燃气用户:  {f['due']} of / 共 {f['households']}",
            f"  shifts today / 今日班次:        {f['shifts']} ({f['shifts_closed']} closed / 已结束)",
            f"  timer sweep / 定时器扫描:       every {args.sweep_seconds:g} s / 每 {args.sweep_seconds:g} 秒",
            f"  calendar jobs / 日历任务:       {calendar}",
            f"  web console / 网页控制台:       http://{args.host}:{args.port}/"
            + ("  (demo log-ins / 演示账号: dispatcher1, reviewer1, designer, leader.clean-east, admin; "
               "password / 密码 cityloop-demo)" if args.demo else ""),
            f"  HTTP API / 接口:               http://{args.host}:{args.port}/api/v1  (OpenAPI docs / 文档: /docs)",
            "Press Ctrl-C to stop / 按 Ctrl-C 停止",
        ]))
        threading.Thread(target=_status_loop, args=(engine, stop, args.status_every), daemon=True).start()
        advertiser = _advertise(args)
        try:
            _serve_http(engine, args, stop)
        finally:
            if advertiser is not None:
                advertiser.close()
    finally:
        print("stopping / 正在停止 ...")
        sched.shutdown(wait=True)
        engine.db.dispose()
        print("stopped / 已停止")
    return 0


def _advertise(args):
    """With --advertise (or CITYLOOP_ADVERTISE=1): announce the sync API over mDNS as
    _cityloop._tcp.local. on --advertise-interface addresses, else where --host listens."""
    if not (args.advertise or settings.current().advertise):
        return None
    from sync.discovery import Advertiser, server_id
    interfaces = args.advertise_interface or None
    if interfaces is None and args.host not in ("0.0.0.0", "", "::"):
        interfaces = [args.host]  # a loopback --host is announced on loopback only
    config = settings.current()
    advertiser = Advertiser(args.port, interfaces=interfaces, server=server_id(config.data, config.server_id)).start()
    where = ", ".join(interfaces) if interfaces else "all interfaces / 所有网卡"
    print(f"  LAN discovery / 局域网发现:      {advertiser.advertisement.name} on {where}")
    return advertiser


def _status_loop(engine, stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        f = _facts(engine)
        log.info("status: open tasks %s; overdue orders %d; households due %d; shifts today %d; next timer %s"
                 " / 状态：待办 %d，超时工单 %d，到期用户 %d", _by_process(f["tasks"]), f["overdue"], f["due"],
                 f["shifts"], _when(f["next_timer"]) or "none", sum(f["tasks"].values()), f["overdue"], f["due"])


def _serve_http(engine, args, stop: threading.Event) -> None:
    """Serve the API in this process until SIGINT/SIGTERM (uvicorn's own handlers)."""
    import uvicorn

    from engine.api.app import create_app
    app = create_app(engine, scheduler=False)  # this process already runs the scheduler
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                           access_log=False, lifespan="on"))
    server.run()
    stop.set()


def cmd_demo_seed(args) -> int:
    from engine.demo import DEFAULT_SEED, AlreadySeeded, seed_database
    started = datetime.now()
    try:
        seed_database(_url(args), households=args.households,
                      seed=DEFAULT_SEED if args.seed is None else args.seed)
    except AlreadySeeded as exc:
        print(f"not seeding: {exc}. Use an empty database (another DATABASE_URL, or remove ./data/cityloop.db)."
              " / 数据库已有演示数据，未做任何更改。", file=sys.stderr)
        return 1
    print(f"demo seeded in {(datetime.now() - started).total_seconds():.1f} s / 演示数据已生成")
    return 0


def cmd_deploy(args) -> int:
    files = []
    for name in args.files:
        try:
            files.append((name, Path(name).read_bytes()))
        except OSError as exc:
            raise CliError(f"cannot read {name}: {exc.strerror}") from None
    engine = _engine(args)
    for d in engine.deploy(files, _cli_actor()):
        state = "new version / 新版本" if d.changed else "unchanged / 未变"
        print(f"{d.kind:5} {d.key:24} v{d.version}  {state}")
    return 0


def cmd_processes(args) -> int:
    from sqlalchemy import func
    from sqlmodel import select

    from engine.db.models import Instance
    engine = _engine(args)
    with engine.transaction() as s:
        counts: dict = {}
        for def_id, state, n in s.exec(select(Instance.definition_id, Instance.state, func.count())
                                       .group_by(Instance.definition_id, Instance.state)):
            counts.setdefault(def_id, {})[state] = n
        rows = [(d.kind, d.key, f"v{d.version}", _when(d.deployed_at), d.deployed_by,
                 ", ".join(f"{n} {st}" for st, n in sorted(counts.get(d.id, {}).items())) if d.kind == "bpmn" else "")
                for d in engine.definitions.versions(s)]
    if not rows:
        print("nothing deployed yet / 尚未部署任何定义")
        return 0
    print(_table(rows, ("KIND", "KEY", "VERSION", "DEPLOYED", "BY", "INSTANCES")))
    return 0


def cmd_operations(args) -> int:
    from engine.domain.registry import build_registry
    ops = build_registry().describe()
    print(_table(sorted(ops.items()), ("OPERATION", "WHAT IT DOES")))
    return 0


def cmd_tasks(args) -> int:
    from engine.runtime.errors import Actor
    actor = Actor(args.user, set(args.group or ()))
    tasks = _engine(args).tasks.for_actor(actor, limit=args.limit)
    print(f"{len(tasks)} open task(s) for {args.user} (groups: {', '.join(sorted(actor.groups)) or 'none'})"
          f" / 待办任务 {len(tasks)} 个")
    if tasks:
        print(_table([(t["business_key"], t["process_key"], t["title"], t["assignee"] or ",".join(t["groups"]),
                       t["claimed_by"], _when(t["due_at"]), _when(t["created_at"]), t["id"]) for t in tasks],
                     ("BUSINESS KEY", "PROCESS", "TASK", "FOR", "CLAIMED BY", "DUE", "OPENED", "TASK ID")))
    return 0


def cmd_timers_fire(args) -> int:
    engine = _engine(args)
    total = 0
    while True:
        n = engine.fire_due_timers()
        total += n
        if n < 100:
            break
    print(f"fired timers on {total} instance(s) / 触发定时器 {total} 个")
    return 0


def cmd_badge_key(args) -> int:
    """Print a rotating badge's master key (hex) for the badge programmer, making one if it
    has none. The key is never sent over the API; keep the output off shared screens."""
    from engine.domain import badges
    with _engine(args).transaction() as s:
        key, made = badges.provision_key(s, args.badge_id)
    print(key.hex())
    print(f"{'new key provisioned' if made else 'existing key'} for badge {args.badge_id} "
          f"/ {'已生成新密钥' if made else '已有密钥'}", file=sys.stderr)
    return 0


def cmd_badge_register(args) -> int:
    from engine.domain import badges
    try:
        beacon = badges.parse_beacon(args.ibeacon) if args.ibeacon else None
    except ValueError as exc:
        raise CliError(f"--ibeacon: {exc}") from None
    kind = "legacy" if beacon else "rotating"
    with _engine(args).transaction() as s:
        badges.register(s, args.badge_id, kind, beacon=beacon)
    print(f"registered {kind} badge {args.badge_id}" + (f" ({args.ibeacon})" if beacon else
                                                         f"; its key: cityloop badge key {args.badge_id}")
          + " / 工牌已登记")
    return 0


def _crew_keys(args) -> list[tuple[str, bytes]]:
    """badge-sim --crew: the crew's active rotating badges and their keys (provisioned if missing)."""
    from sqlmodel import select

    from engine.domain import badges
    from engine.domain.models import Badge, Cleaner
    with _engine(args).transaction() as s:
        ids = s.exec(select(Cleaner.badge_id).where(Cleaner.crew_code == args.crew, Cleaner.badge_id.is_not(None))
                     .order_by(Cleaner.id)).all()
        if not ids:
            raise CliError(f"no crew {args.crew!r} with badges / 没有该班组或班组没有工牌")
        rotating = [b for b in ids
                    if (badge := s.get(Badge, b)) is not None and badge.kind == "rotating" and badge.active]
        return [(b, badges.provision_key(s, b)[0]) for b in rotating]


def cmd_db_upgrade(args) -> int:
    from engine.db.migrate import current, upgrade
    from engine.db.session import make_engine
    url = _url(args)
    db = make_engine(url)
    try:
        upgrade(db)
        print(f"{_shown_url(url)} is at revision {current(db)} / 数据库已升级")
    finally:
        db.dispose()
    return 0


# ---- parser and entry point --------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cityloop",
                                description="cityloop: city operations case management / 城市运行闭环管理")
    p.add_argument("--db", metavar="URL", help="database URL (default: $DATABASE_URL, else ./data/cityloop.db)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the HTTP server, the engine and its scheduler")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--demo", action="store_true", help="seed the demo district if the database is empty")
    s.add_argument("--households", type=int, default=300, help="demo gas households (with --demo)")
    s.add_argument("--sweep-seconds", type=float, default=5.0, help="timer sweep interval (default 5)")
    s.add_argument("--no-calendar", action="store_true", help="no calendar jobs (shift planning, gas due list)")
    s.add_argument("--status-every", type=float, default=60.0, metavar="SECONDS", help="status line interval")
    s.add_argument("--advertise", action="store_true",
                   help="announce the sync API on the LAN (mDNS _cityloop._tcp; also CITYLOOP_ADVERTISE=1)")
    s.add_argument("--advertise-interface", action="append", metavar="IP",
                   help="IPv4 address to announce on (repeatable; default: where --host listens)")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="demo data").add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    ds = d.add_parser("seed", help="seed the demo district into the database")
    ds.add_argument("--households", type=int, default=300)
    ds.add_argument("--seed", type=int, default=None, help="random seed (default: fixed)")
    ds.set_defaults(func=cmd_demo_seed)

    dp = sub.add_parser("deploy", help="deploy BPMN/DMN/form files")
    dp.add_argument("files", nargs="+", metavar="FILE")
    dp.set_defaults(func=cmd_deploy)

    sub.add_parser("processes", help="deployed definitions, versions and instances").set_defaults(func=cmd_processes)
    sub.add_parser("operations", help="operations service tasks may name").set_defaults(func=cmd_operations)

    t = sub.add_parser("tasks", help="open tasks for a person")
    t.add_argument("--user", required=True, metavar="ID")
    t.add_argument("--group", action="append", metavar="G", help="a group of the person (repeatable)")
    t.add_argument("--limit", type=int, default=200)
    t.set_defaults(func=cmd_tasks)

    tm = sub.add_parser("timers", help="timers").add_subparsers(dest="timers_command", required=True, metavar="ACTION")
    tm.add_parser("fire", help="fire due timers now (one sweep)").set_defaults(func=cmd_timers_fire)

    db = sub.add_parser("db", help="database").add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db.add_parser("upgrade", help="apply schema migrations").set_defaults(func=cmd_db_upgrade)

    bd = sub.add_parser("badge", help="staff badges").add_subparsers(dest="badge_command", required=True,
                                                                     metavar="ACTION")
    bk = bd.add_parser("key", help="print a badge's key for the badge programmer (made if missing)")
    bk.add_argument("badge_id", metavar="BADGE")
    bk.set_defaults(func=cmd_badge_key)
    br = bd.add_parser("register", help="register a rotating badge (or a legacy iBeacon with --ibeacon)")
    br.add_argument("badge_id", metavar="BADGE")
    br.add_argument("--ibeacon", metavar="UUID:MAJOR:MINOR", help="a static legacy iBeacon badge (unverified)")
    br.set_defaults(func=cmd_badge_register)

    from devices.cli import register as register_radio_commands  # badge-pair, badge-gateway, badge-sim
    register_radio_commands(sub, crew_keys=_crew_keys)
    return p


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().split("\n")[0]
    return text or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Our own loggers at INFO; libraries (SpiffWorkflow logs every task state) at WARNING.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("cityloop").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from sqlalchemy.exc import SQLAlchemyError

    from engine.bpmn.xml import DefinitionError
    from engine.runtime.errors import EngineError
    try:
        return args.func(args) or 0
    except DefinitionError as exc:
        print(f"refused / 拒绝部署: {exc.source}", file=sys.stderr)
        for element, message in exc.problems:
            print(f"  {exc.source}: {'element ' + repr(element) + ': ' if element else ''}{message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted / 已中断", file=sys.stderr)
        return 130
    except Exception as exc:
        if settings.current().debug:
            raise
        if isinstance(exc, EngineError):
            what = exc.code
        elif isinstance(exc, CliError):
            what = "usage"
        elif isinstance(exc, SQLAlchemyError):
            what = "database"
            exc = getattr(exc, "orig", None) or exc
        else:
            what = type(exc).__name__
        print(f"error ({what}): {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
