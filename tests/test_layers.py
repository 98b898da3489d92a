"""The package's import graph: no circles, and no arrow from a lower layer to a higher one.

Every module (function-level imports included) is read with ``ast``; a module missing from
``LAYERS`` fails, so a new module must be placed in the house plan (docs/architecture.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "tangentlens"

# Low to high. A module may import its own layer's modules of the same top-level group
# (e.g. ntk.empirical → ntk.jacobian) and anything in a lower layer; nothing higher.
LAYERS: list[tuple[str, ...]] = [
    ("version", "config", "data", "store", "metrics", "plots", "rundir", "executors"),
    ("models",),
    ("tangent",),
    ("linearized",),
    ("ntk", "regimes", "budget"),
    ("limits",),
    ("train",),
    ("rebuild",),
    ("lenses",),
    ("report",),
    ("sweep", "experiments", "quickstart"),
    ("findings",),
    ("cli", "__init__"),
]


def _modules() -> dict[str, Path]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


MODULES = _modules()


def _resolve(name: str) -> str:
    """The deepest module of ``name`` that exists (``a.b.func`` → ``a.b``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(mod: str) -> set[str]:
    path = MODULES[mod]
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
                prefix = "tangentlens" + ("." + prefix if prefix else "")
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            if n == "tangentlens" or n.startswith("tangentlens."):
                target = _resolve(n.removeprefix("tangentlens").removeprefix("."))
                if target in MODULES and target != mod:
                    out.add(target)
    return out


def group(mod: str) -> str:
    return mod.split(".")[0] if mod else "__init__"


def layer(mod: str) -> int:
    for i, names in enumerate(LAYERS):
        if group(mod) in names:
            return i
    raise KeyError(mod)


def test_every_module_has_a_layer():
    missing = sorted(m for m in MODULES if not any(group(m) in names for names in LAYERS))
    assert not missing, f"modules not placed in LAYERS (tests/test_layers.py): {missing}"


def test_no_upward_or_sideways_imports():
    bad = []
    for mod in MODULES:
        for dep in imports_of(mod):
            up = layer(dep) > layer(mod)
            sideways = layer(dep) == layer(mod) and group(dep) != group(mod)
            if up or sideways:
                bad.append(f"{mod or 'tangentlens'} (layer {layer(mod)}) → {dep} "
                           f"(layer {layer(dep)})")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    graph = {m: imports_of(m) for m in MODULES}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(" → ".join(stack[stack.index(d):] + [m, d]) if d in stack
                              else f"{m} → {d}")
            elif d not in state:
                visit(d, stack + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("pair", [("ntk.empirical", "ntk.structured"),
                                  ("models.mlp", "models")])
def test_known_former_circles_are_gone(pair):
    a, b = pair
    assert not (b in imports_of(a) and a in imports_of(b))
    assert a in MODULES and b in MODULES


def test_walker_sees_relative_and_function_level_imports():
    # a check that cannot fail is a defect: the walker must see these real edges
    assert "ntk.jacobian" in imports_of("ntk.structured")
    assert "train" in imports_of("rebuild")            # function-level import
    assert "plots.style" in imports_of("plots.curves")  # `from . import style`
    assert "version" in imports_of("lenses.registry")   # `from ..version import`
