"""raftnet/core/ does no I/O: it imports nothing but pure standard-library
modules and itself (checked by reading every module's imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import raftnet.core

CORE = Path(raftnet.core.__file__).parent
ALLOWED = {"__future__", "dataclasses", "enum", "collections", "collections.abc", "typing", "itertools",
           "bisect", "random", "functools", "math", "heapq"}


def test_core_imports_only_pure_modules():
    offenders = []
    for path in sorted(CORE.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level > 0:
                    continue  # from . import x: inside the core
                names = [node.module]
            else:
                continue
            for name in names:
                if name not in ALLOWED:
                    offenders.append(f"{path.name}: {name}")
    assert not offenders, offenders
    assert len(list(CORE.glob("*.py"))) >= 8


def test_core_uses_random_only_as_a_passed_in_generator():
    """`random` may appear as a type; the module-level functions (global,
    unseeded state) must not be called."""
    for path in sorted(CORE.glob("*.py")):
        text = path.read_text()
        for fn in ("random.random(", "random.randint(", "random.choice(", "random.seed(", "random.shuffle("):
            assert fn not in text, f"{path.name} calls {fn}"


def test_runtime_code_never_imports_the_simulator_or_the_tests():
    """node/, storage/, kv/, cli/, the client and config run in production:
    they import neither ``raftnet.sim`` nor test code (DESIGN.md's arrows)."""
    root = CORE.parent
    runtime = [p for sub in ("node", "storage", "kv", "cli") for p in sorted((root / sub).glob("*.py"))]
    runtime += [root / name for name in ("client.py", "config.py", "logs.py", "excgroups.py", "__main__.py")]
    offenders = []
    for path in runtime:
        package = path.parent.relative_to(root.parent).as_posix().replace("/", ".")
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")
                if node.level:
                    base = base[: len(base) - node.level + 1]
                    names = [".".join(base + ([node.module] if node.module else []))]
                else:
                    names = [node.module]
            else:
                continue
            for name in names:
                if name.startswith(("raftnet.sim", "tests", "cluster_harness", "hypothesis", "pytest")):
                    offenders.append(f"{path.relative_to(root)}: {name}")
    assert not offenders, offenders
