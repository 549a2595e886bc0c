"""Database engine creation: SQLite (WAL) by default, PostgreSQL via DATABASE_URL."""
from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import create_engine

from engine import settings
from engine.db import direct, sqlite_checkpoint
from engine.db.sqlite_writer import WriterConnection, WriterLock

__all__ = ["database_url", "is_sqlite", "make_engine", "normalize_url"]


def database_url() -> str:
    """The configured database (DATABASE_URL), else SQLite in the data directory."""
    config = settings.current()
    if config.database_url:
        return normalize_url(config.database_url)
    config.data.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{config.data / 'cityloop.db'}"


def normalize_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def _writer_connection_class(database: str) -> type[WriterConnection]:
    """A connection class bound to this database file's writer lock."""
    return type("CityloopSQLiteConnection", (WriterConnection,), {"writer_lock": WriterLock.for_database(database)})


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str | None = None, **kwargs) -> Engine:
    url = normalize_url(url or database_url())
    if make_url(url).get_backend_name() == "sqlite":
        database = make_url(url).database
        connect_args = {"check_same_thread": False, "timeout": 30}
        on_file = database not in (None, "", ":memory:") and not database.startswith("file:")
        if on_file:
            connect_args["factory"] = _writer_connection_class(database)
        engine = create_engine(url, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # WAL lets readers run beside the writer; busy_timeout makes writers queue
            # instead of failing; foreign keys are off by default in SQLite.
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see below)
            cur = dbapi_conn.cursor()
            if make_url(url).database not in (None, "", ":memory:"):
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            if on_file:     # (checkpoints come from a thread of their own: engine.db.sqlite_checkpoint)
                for pragma in sqlite_checkpoint.connection_pragmas():
                    cur.execute(pragma)
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # Writers take the lock up front (BEGIN IMMEDIATE) so two of them never both
            # read and then fail upgrading their locks; readers begin deferred and never
            # block anyone under WAL. Writers ask for it with execution_options(write=True).
            # Writers also queue on the writer lock (engine.db.sqlite_writer) first.
            immediate = conn.get_execution_options().get("write", False)
            dbapi = conn.connection.dbapi_connection
            if immediate and isinstance(dbapi, WriterConnection):
                dbapi.begin_write()
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        if on_file:
            sqlite_checkpoint.start(engine, database)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # No pre-ping: it cost a SELECT 1 round trip on every checkout (two per request; 7-9% of a
    # task completion's samples in a py-spy profile of bench.http_api). A connection the server dropped while it
    # sat in the pool fails its first statement instead; SQLAlchemy then discards the whole
    # pool, and the API answers that one request 503 + Retry-After (nothing was written).
    engine = create_engine(url, **kwargs)
    direct.watch_deferred(engine)   # (a step's writes go out in one pipeline: engine.db.direct)
    return engine
