"""The server's layers import one way (DESIGN.md section 2; contracts in pyproject.toml,
[tool.importlinter]), and no module reaches for another module's private names."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("engine", "sync", "devices", "fieldapp")


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in run.stdout, run.stdout[-2000:]


def private_imports(paths, root: Path = ROOT) -> list[str]:
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in OURS:
                found += [f"{path.relative_to(root)}:{node.lineno}: from {node.module} import {a.name}"
                          for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_module_imports_another_modules_private_names():
    code = [p for pkg in OURS for p in (ROOT / pkg).rglob("*.py")]
    assert code, "no sources found"
    assert private_imports(code) == []


def test_the_private_name_check_can_fail(tmp_path):
    (tmp_path / "m.py").write_text("from engine.db.direct import _plan, execute\n")
    assert private_imports([tmp_path / "m.py"], tmp_path) == ["m.py:1: from engine.db.direct import _plan"]
