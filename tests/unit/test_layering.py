"""The layers, checked over the sources: core (ferry/*) → storage/ → tasks/ → flows/ → the CLI (ferry/cli/).

A module imports only from its own layer and the layers below it. Every import counts, including
the lazy ones inside functions and those under ``TYPE_CHECKING``: a dependency is a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("ferry", "storage", "tasks", "flows", "ferry.cli")  # bottom to top
PACKAGES = ("ferry", "storage", "tasks", "flows")


def layer(module: str) -> int | None:
    """The rank of ``module`` in LAYERS, or None for a module outside ferry's packages."""
    if module == "ferry.cli" or module.startswith("ferry.cli."):
        return LAYERS.index("ferry.cli")
    top = module.split(".", 1)[0]
    return LAYERS.index(top) if top in PACKAGES else None


def imports(source: str, module: str) -> list[tuple[int, str]]:
    """Every module ``source`` (the text of ``module``) imports, with its line."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                package = module.split(".")[: -node.level]
                base = ".".join([*package, base] if base else package)
            # `from ferry import cli` imports the module ferry.cli, not just the package ferry.
            found += [(node.lineno, f"{base}.{alias.name}" if base in PACKAGES else base) for alias in node.names]
    return found


def violations(source: str, module: str) -> list[str]:
    own = layer(module)
    assert own is not None
    return [
        f"{module}:{line} imports {target} ({LAYERS[rank]} is above {LAYERS[own]})"
        for line, target in imports(source, module)
        if (rank := layer(target)) is not None and rank > own
    ]


def package_modules() -> list[tuple[str, Path]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found.append((name, path))
    return found


def test_every_package_module_is_checked() -> None:
    names = {name for name, _ in package_modules()}
    assert {"ferry.errors", "storage.store", "tasks.verify", "flows.restore", "ferry.cli", "ferry.cli.ls"} <= names


def test_no_layer_imports_from_a_layer_above() -> None:
    found = [v for name, path in package_modules() for v in violations(path.read_text(), name)]
    assert found == []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("ferry.inspection", "from storage.reading import open_archive"),
        ("ferry.keys", "def f():\n    import flows.restore\n"),
        (
            "storage.store",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tasks.verify import Verified\n",
        ),
        ("tasks.verify", "from flows import restore"),
        ("flows.restore", "from ferry import cli"),
        ("ferry.runtime", "from ferry.cli.ls import run"),
        ("ferry.cli.ls", "from .. import cli\nfrom . import _args\nimport flows.snapshot\n"),
    ],
)
def test_the_check_sees_an_upward_import(module: str, source: str) -> None:
    """The check is not vacuous: each of these is an upward import (the last one is not)."""
    if module.startswith("ferry.cli"):
        assert violations(source, module) == []
    else:
        assert len(violations(source, module)) == 1


@pytest.mark.parametrize("argv", [["verify", "--help"], ["ls", "{store}"], ["ls", "{store}", "--json"], ["doctor"]])
def test_commands_that_run_no_flow_import_no_prefect(argv: list[str], tmp_path: Path) -> None:
    """Prefect costs seconds to import; only snapshot and restore (which run flows) may pay it."""
    argv = [a.format(store=f"file://{tmp_path}") for a in argv]
    code = (
        "import sys\nfrom ferry.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "loaded = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "print('PREFECT', loaded[:5], 'FERRY', 'ferry.cli' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=600, check=False)
    assert "PREFECT [] FERRY True" in done.stdout, done.stdout + done.stderr
