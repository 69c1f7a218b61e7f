"""The package's shape: no module over 300 lines, module-level imports only downward through the layers, and no
import cycles (docs/interfaces.md#layout)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "gpmcli"
MAX_LINES = 300

# Top to bottom. A module may import, at module level, only modules of its own layer or of a layer below; the
# longest matching prefix decides a module's layer. Imports inside functions are not counted (they load on use).
LAYERS = [
    ("cli", "__main__", "entry"),  # the command line
    ("api", "runrecord", "models", "train", "metrics", "convert", "zoo", "viz"),  # what the commands do
    ("samplers",),  # the --model kinds
    ("fields",),  # score, discriminator and latent fields over the networks
    ("nets", "noise", "data", "refs", "registry", "output", "checkpoint", "hub", "hubcache", "fetch", "safeload",
     "usercode", "distributed", "precision", "describe", "fields.base", "integrate"),  # building blocks
    ("errors", "version", "device", "hashing", "plugins", "opts"),  # leaves
]


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["gpmcli", *parts])] = p
    return out


def _module_level_imports(path: Path, name: str) -> set[str]:
    """gpmcli modules imported by statements that run on import (not inside functions or classes)."""
    found = set()
    todo = list(ast.parse(path.read_text()).body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            todo.extend(ast.iter_child_nodes(node))
        elif isinstance(node, ast.ExceptHandler):
            todo.extend(node.body)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return {m for m in found if m == "gpmcli" or m.startswith("gpmcli.")}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {t for t in _module_level_imports(p, m) if t in mods and t != m} for m, p in mods.items()}


def _layer(module: str) -> int:
    rel = module.removeprefix("gpmcli").removeprefix(".")
    if not rel:
        return -1  # the package itself: the public facade, above everything
    best, layer = -1, None
    for i, names in enumerate(LAYERS):
        for n in names:
            if (rel == n or rel.startswith(n + ".")) and len(n) > best:
                best, layer = len(n), i
    assert layer is not None, f"{module} is in no layer of tests/test_layout.py; add it where it belongs"
    return layer


def test_no_module_over_300_lines():
    long = {str(p.relative_to(PKG.parent)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these along a real seam: {long}"


def test_module_level_imports_go_down_the_layers():
    upward = [f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
              for m, targets in _graph().items() for t in targets
              if _layer(t) < _layer(m) and not t.startswith(m + ".")]  # a package may import its own modules
    assert not upward, "\n".join(sorted(upward))


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [m, t]) if t in stack else f"{m} -> {t}")
            elif t not in state:
                visit(t, stack + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert not cycles, "\n".join(cycles)


def test_the_checks_see_a_violation(tmp_path):
    """The import parser finds what the rules need: absolute, relative, nested and `from pkg import module`."""
    src = tmp_path / "m.py"
    src.write_text("import gpmcli.api\nfrom . import noise\ntry:\n    from gpmcli.fields import score\nexcept Exception:"
                   "\n    pass\ndef f():\n    import gpmcli.cli\n")
    got = _module_level_imports(src, "gpmcli.m")
    assert {"gpmcli.api", "gpmcli.noise", "gpmcli.fields.score"} <= got and "gpmcli.cli" not in got
    assert _layer("gpmcli.fields.base") > _layer("gpmcli.fields.score") > _layer("gpmcli.samplers.edm")


def test_every_docs_interfaces_reference_in_the_code_resolves():
    import re

    doc = PKG.parent / "docs" / "interfaces.md"
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", doc.read_text(), re.M)}
    refs = {(str(p.relative_to(PKG.parent)), a) for root in (PKG, PKG.parent / "tests") for p in root.rglob("*.py")
            for a in re.findall(r"docs/interfaces\.md#([a-z0-9-]+)", p.read_text())}
    assert refs, "no references found: the pattern is wrong"
    missing = sorted((f, a) for f, a in refs if a not in anchors)
    assert not missing, f"anchors not in docs/interfaces.md: {missing}"
