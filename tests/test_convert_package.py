"""The converters are a package of small per-format modules, outside the checkpoint / Hub import graph."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gpmcli

PKG = Path(gpmcli.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module a file imports (top level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_checkpoint_and_hub_never_import_the_converters():
    for name in ("checkpoint.py", "hub.py", "safeload.py", "usercode.py"):
        bad = {m for m in _imports(PKG / name) if m == "gpmcli.convert" or m.startswith("gpmcli.convert.")}
        assert not bad, f"{name} imports {bad}"


def test_loading_a_checkpoint_leaves_the_converters_unimported(tmp_path):
    code = ("import sys\n"
            "from gpmcli.registry import load_bundle\n"
            "import gpmcli.hub\n"
            "b = load_bundle('mnist-gan')\n"
            "print(sorted(m for m in sys.modules if m.startswith('gpmcli.convert')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_each_format_is_one_small_module():
    from gpmcli.convert import CONVERTERS, converter

    for path in sorted((PKG / "convert").glob("*.py")):
        n = len(path.read_text().splitlines())
        assert n <= 250, f"{path.name}: {n} lines"
    for fmt, target in CONVERTERS.items():
        mod = target.split(":")[0]
        assert (PKG / "convert" / f"{mod}.py").is_file(), fmt
        assert callable(converter(fmt))
