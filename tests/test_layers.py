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
    assert "Contracts: 7 kept, 0 broken." in run.stdout, run.stdout[-2000:]


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


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exports(tree) -> list[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return None


def test_every_module_has_a_public_face_and_others_use_only_that():
    """Each module says what others may use (`__all__`); a name imported from a module of
    ours is one it exports (a submodule of a package counts as exported)."""
    modules = {_module_of(p): p for pkg in OURS for p in (ROOT / pkg).rglob("*.py")
               if "migrations" not in p.parts}
    trees = {m: ast.parse(p.read_text(), str(p)) for m, p in modules.items()}
    exports = {m: _exports(t) for m, t in trees.items()}
    faceless = sorted(m for m, e in exports.items()
                      if e is None and not modules[m].name == "__init__.py" and ast.get_docstring(trees[m]) is not None
                      and any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in trees[m].body))
    assert faceless == [], f"modules without __all__: {faceless}"
    users = {**trees, **{_module_of(p): ast.parse(p.read_text(), str(p))
                         for pkg in ("tests", "bench") for p in (ROOT / pkg).rglob("*.py")}}
    outside = []
    for user, tree in users.items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.module in exports and node.level == 0):
                continue
            allowed = exports[node.module]
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules or allowed is None:
                    continue
                if alias.name not in allowed:
                    outside.append(f"{user}: from {node.module} import {alias.name}")
    assert outside == [], "names used that their module does not export:\n" + "\n".join(sorted(outside))
