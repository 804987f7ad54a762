"""The library's imports form a one-way stack: no module imports (even inside a function)
a module that imports it back, directly or through others."""
import ast
import importlib
import re
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
            # "from pkg import sub" imports the module pkg.sub; "from pkg import name" needs pkg itself
            candidates = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
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
    """The first import cycle of ``graph`` (module -> modules it imports), or None.  A package
    importing its own submodules is the only edge that cannot close a cycle by itself; a
    submodule importing its package (whose ``__init__`` imports it) is an edge like any other."""
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph[n]):
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


ARCHITECTURE = PKG.parents[1] / "docs" / "ARCHITECTURE.md"


def documented_rows(text=None):
    """The rows of the stack drawn in docs/ARCHITECTURE.md, bottom row first: each a set of the
    package's top-level modules or subpackages (``papers``, ``regularizers``, ...).  A row is a
    line of names joined by " · " before the description; a trailing " ·" continues it."""
    text = ARCHITECTURE.read_text() if text is None else text
    block = text.split("```", 2)[1]
    rows, pending = [], []
    for line in block.splitlines():
        left = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        if not left or left.startswith(("│", "notebooks/")):
            continue
        names = [n.strip() for n in left.split("·")]
        pending += [n for n in names if n]
        if not left.rstrip().endswith("·"):
            rows.append(set(pending))
            pending = []
    return rows[::-1]


def _group(module):
    """The top-level name under the package: robust_saliency.regularizers.density -> regularizers."""
    return module.split(".")[1] if module.count(".") else module


def row_violations(graph, rows):
    """Imports that do not go strictly down the documented rows: to the same row (another group
    of it), to a row above, or from a submodule to its own package's ``__init__`` (which imports
    it); and modules no row names."""
    level = {name: i for i, row in enumerate(rows) for name in row}
    out = []
    for mod, targets in sorted(graph.items()):
        if mod == "robust_saliency":
            continue
        g = _group(mod)
        if g not in level:
            out.append(f"{mod}: its group {g!r} is in no row of docs/ARCHITECTURE.md")
            continue
        for t in sorted(targets):
            if t == "robust_saliency":
                continue
            h = _group(t)
            if h == g:
                if mod.startswith(t + "."):
                    out.append(f"{mod} imports its own package {t} (whose __init__ imports it)")
                continue
            if h in level and level[h] >= level[g]:
                where = "the same row" if level[h] == level[g] else "a row above"
                out.append(f"{mod} imports {t}, in {where}")
    return out


def test_imports_follow_the_documented_rows():
    bad = row_violations(_graph(), documented_rows())
    assert not bad, "imports against docs/ARCHITECTURE.md's stack:\n" + "\n".join(bad)


def test_the_row_check_catches_same_row_upward_and_parent_imports():
    rows = [{"common"}, {"models", "data"}, {"regularizers"}, {"methods"}]
    graph = {"robust_saliency.models": {"robust_saliency.data"},                     # same row
             "robust_saliency.common": {"robust_saliency.methods"},                  # upward
             "robust_saliency.regularizers": {"robust_saliency.regularizers.density"},
             "robust_saliency.regularizers.density": {"robust_saliency.regularizers"},  # parent
             "robust_saliency.methods": {"robust_saliency.regularizers", "robust_saliency.common"}}
    bad = row_violations(graph, rows)
    assert any("models imports robust_saliency.data, in the same row" in b for b in bad)
    assert any("common imports robust_saliency.methods, in a row above" in b for b in bad)
    assert any("density imports its own package" in b for b in bad)
    assert not any(b.startswith("robust_saliency.methods") for b in bad)
    assert _cycle(graph) is not None  # density -> regularizers -> density
    text = "```\n top        x\n    │\n a · b ·    y\n c          z\n```"
    assert documented_rows(text) == [{"a", "b", "c"}, {"top"}]


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


def test_public_names_keep_working():
    """The names notebooks and other code rely on exist with their documented call shapes."""
    import torch

    from robust_saliency import attacks, attributions, data, experiments, metrics, models, regularizers, training

    for name in ("rps", "insertion_curve", "insertion_score", "deletion_score", "preservation_score",
                 "topk_intersection", "spearman", "pcc", "ssim", "worst_group_accuracy", "gini",
                 "feature_leakage", "ood_auroc"):
        assert callable(getattr(metrics, name)), name
    assert all(callable(f) for f in (data.load, models.build, training.train, experiments.validate,
                                     experiments.profile_params, regularizers.gradient_alignment_terms))
    torch.manual_seed(0)
    net = models.build("small_cnn", num_classes=3, in_shape=(1, 8, 8))
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 2])
    assert attributions.get("grad")(net, x, y, create_graph=False).shape == x.shape
    x_adv = attacks.get("pgd", norm="linf", eps=8, steps=2)(net, x, y)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    loss, _ = regularizers.get("l2_cosd", eps=4, lam_l2=0.01, lam_cos=1.0)(net, x, y)
    assert loss.dim() == 0 and regularizers.get("l2_cosd").penalty(net, x, y).dim() == 0
    l2, cosd = regularizers.gradient_alignment_terms(net, x, y, torch.zeros_like(x) + 1e-3)
    assert l2.shape == cosd.shape == (2,)
    from robust_saliency.adversarial_training import one_step_perturbation

    g = torch.randn(2, 1, 8, 8)
    for mode in ("l1", "group", "elastic", "weighted_l2"):
        d = one_step_perturbation(g, mode, 0.1, eps2=0.1, group_size=4, attention=torch.rand(2, 1, 8, 8))
        assert d.shape == g.shape
    g = regularizers.marginal_density_grad(net, x, variant="stable")
    assert g.shape == x.shape
    assert metrics.feature_leakage(net, x, y, torch.ones_like(x, dtype=torch.bool), steps=4).shape == (2,)
    assert metrics.ood_auroc(net, x, x) == 0.5  # the same scores in and out: no separation
