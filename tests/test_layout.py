"""The library's imports form a one-way stack: no module imports (even inside a function)
a module that imports it back, directly or through others."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "lib" / "robust_saliency"


def _module_name(path):
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(name, path, known):
    """Package modules that ``name`` imports anywhere in its file (relative or absolute)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            candidates = [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        for c in candidates:
            if c in known and c != name:
                out.add(c)
    return out


def _graph():
    mods = _modules()
    return {n: _imports(n, p, mods) for n, p in mods.items()}


def _cycle(graph):
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph[n]):
            # a package's __init__ re-exporting its own submodules is not a cycle of concerns
            if m.startswith(n + ".") or n.startswith(m + "."):
                continue
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        state[n] = "done"
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("leaf", ["robust_saliency.common", "robust_saliency.units",
                                  "robust_saliency.cache", "robust_saliency.claims",
                                  "robust_saliency.registry"])
def test_leaf_modules_import_nothing_from_the_package(leaf):
    assert _graph()[leaf] == set()


def test_architecture_page_names_every_module():
    page = (PKG.parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    names = [n.removeprefix("robust_saliency.") for n in _modules() if n != "robust_saliency"]
    missing = [n for n in names if not n.rpartition(".")[2].startswith("_")
               and f"`{n}`" not in page and f"`{n.rpartition('.')[2]}`" not in page
               and n not in page]
    assert not missing, f"docs/ARCHITECTURE.md does not name {missing}"
