"""Settings in one place: every server setting is read by engine.settings, bad values stop
the server with the variable's name, and secrets come from the settings or their files."""
from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from pydantic import ValidationError

from engine import settings
from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def environment_reads(paths) -> list[str]:
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv") \
                    and isinstance(node.value, ast.Name) and node.value.id == "os":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_only_the_settings_module_reads_the_environment_on_the_server():
    server = [p for pkg in ("engine", "sync/server") for p in (ROOT / pkg).rglob("*.py")
              if p != ROOT / "engine" / "settings.py" and "migrations" not in p.parts]
    assert len(server) > 40
    assert environment_reads(server) == []


def test_defaults_and_values_from_the_environment(setenv):
    setenv(CITYLOOP_THREADS=None, CITYLOOP_TIMEZONE=None, CITYLOOP_OPEN311_PER_HOUR=None)
    config = settings.current()
    assert (config.threads, config.timezone, config.open311_per_hour) == (4, "Asia/Shanghai", 20)
    setenv(CITYLOOP_THREADS="3", CITYLOOP_TIMEZONE="Asia/Urumqi", CITYLOOP_CAMERA_WINDOW_HOURS="1.5",
           DATABASE_URL="postgresql://x@h/db")
    config = settings.current()
    assert (config.threads, config.district_tz.key, config.camera_window) == (3, "Asia/Urumqi", timedelta(hours=1.5))
    assert config.database_url == "postgresql://x@h/db"


@pytest.mark.parametrize("name, value", [("CITYLOOP_THREADS", "lots"), ("CITYLOOP_THREADS", "0"),
                                         ("CITYLOOP_TIMEZONE", "Mars/Olympus"),
                                         ("CITYLOOP_CAMERA_MIN_CONFIDENCE", "2"), ("CITYLOOP_SCHEDULER", "maybe")])
def test_a_bad_value_is_refused_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    field = name.removeprefix("CITYLOOP_").lower()
    assert field in str(refused.value)


def test_secrets_come_from_the_variable_or_its_file(tmp_path, monkeypatch):
    monkeypatch.delenv("CITYLOOP_TOKEN_KEY", raising=False)
    assert Settings().secret("token_key") is None
    key = tmp_path / "token.key"
    key.write_text("from a file\n")
    monkeypatch.setenv("CITYLOOP_TOKEN_KEY_FILE", str(key))
    assert Settings().secret("token_key") == "from a file"
    monkeypatch.setenv("CITYLOOP_TOKEN_KEY", "from the variable")
    assert Settings().secret("token_key") == "from the variable"
    assert "from the variable" not in repr(Settings()), "secrets are not printed"
    monkeypatch.delenv("CITYLOOP_TOKEN_KEY")
    key.write_text("")
    with pytest.raises(RuntimeError, match="TOKEN_KEY_FILE.*empty"):
        Settings().secret("token_key")
    monkeypatch.setenv("CITYLOOP_TOKEN_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match="cannot read"):
        Settings().secret("token_key")


def test_tokens_are_signed_with_the_configured_key(db_url, clock, setenv, tmp_path):
    from engine.auth import service
    from engine.domain.models import Staff
    from engine.system import build
    key = tmp_path / "token.key"
    key.write_text("a key the operators keep, 32 bytes or more")
    setenv(CITYLOOP_TOKEN_KEY_FILE=str(key))
    service.forget_keys()   # (keys are cached per database URL, and a run's PostgreSQL URL is shared)
    engine = build(db_url, clock=clock)
    try:
        with engine.transaction() as s:
            s.add(Staff(id="someone", name="someone", role="dispatcher"))
            s.flush()
            token = service.issue_token(s, s.get(Staff, "someone"), clock())
        claims = jwt.decode(token, "a key the operators keep, 32 bytes or more", algorithms=["HS256"],
                            options={"verify_exp": False})
        assert claims["sub"] == "someone"
    finally:
        service.forget_keys()
        engine.db.dispose()
