"""Type hints on the public API.

For every module of the package but those in ``NOT_YET``: each public function (a module-level
callable defined in that module, not imported, whose name does not start with ``_``) and each
public class's constructor and public methods annotate every parameter (but ``self``/``cls``,
``*args`` and ``**kwargs``) and the return.  Annotations are strings (``from __future__ import
annotations``: nothing is evaluated at import) that evaluate in the module's namespace plus its
``if TYPE_CHECKING:`` imports, so a misspelt or unimported name fails here.

Every module of the package is either checked (``CHECKED``) or listed in ``NOT_YET``, so a new
module has to be placed in one of them.
"""
import __future__

import ast
import fnmatch
import importlib
import inspect
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "lib" / "robust_saliency"

CHECKED = (
    "robust_saliency",
    "robust_saliency.settings",
    "robust_saliency.executor",
    "robust_saliency.adversarial_training",
    "robust_saliency.attacks",
    "robust_saliency.attributions",
    "robust_saliency.attributions._common",
    "robust_saliency.attributions.captum_methods",
    "robust_saliency.attributions.fitted",
    "robust_saliency.attributions.gradient",
    "robust_saliency.attributions.lrp",
    "robust_saliency.attributions.moreau",
    "robust_saliency.attributions.postprocess",
    "robust_saliency.attributions.smooth",
    "robust_saliency.cache",
    "robust_saliency.claims",
    "robust_saliency.common",
    "robust_saliency.compare",
    "robust_saliency.cost",
    "robust_saliency.data",
    "robust_saliency.data._checks",
    "robust_saliency.data.datasets",
    "robust_saliency.data.real",
    "robust_saliency.data.synthetic",
    "robust_saliency.evaluation",
    "robust_saliency.experiments",
    "robust_saliency.metrics",
    "robust_saliency.metrics._common",
    "robust_saliency.metrics.accuracy",
    "robust_saliency.metrics.concentration",
    "robust_saliency.metrics.density",
    "robust_saliency.metrics.games",
    "robust_saliency.metrics.robustness",
    "robust_saliency.metrics.similarity",
    "robust_saliency.methods",
    "robust_saliency.models",
    "robust_saliency.papers",
    "robust_saliency.papers.p1",
    "robust_saliency.papers.p2",
    "robust_saliency.papers.p3",
    "robust_saliency.papers.p4",
    "robust_saliency.papers.protocol",
    "robust_saliency.papers.unified",
    "robust_saliency.plotting",
    "robust_saliency.profiles",
    "robust_saliency.registry",
    "robust_saliency.regularizers",
    "robust_saliency.regularizers._checks",
    "robust_saliency.regularizers.alignment",
    "robust_saliency.regularizers.base",
    "robust_saliency.regularizers.baselines",
    "robust_saliency.regularizers.density",
    "robust_saliency.regularizers.terms",
    "robust_saliency.report",
    "robust_saliency.results",
    "robust_saliency.runs",
    "robust_saliency.site",
    "robust_saliency.sweep",
    "robust_saliency.training",
    "robust_saliency.units",
)

# Modules whose public API is not annotated yet (annotated separately); fnmatch patterns.
NOT_YET = ()


def _module_name(path):
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _all_modules():
    return sorted(_module_name(p) for p in PKG.rglob("*.py"))


def _not_yet(name):
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in NOT_YET)


def _module_to_check(name):
    """The imported module ``name``; the test is skipped for a module in ``NOT_YET``."""
    if _not_yet(name):
        pytest.skip(f"{name} is in NOT_YET: its public API is annotated separately")
    return importlib.import_module(name)


def _public_callables(mod):
    """``{qualified name: function}``: the module's own public functions, and the constructor and
    public methods (properties' getters and setters included) of its own public classes."""
    out = {}
    for name, obj in vars(mod).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
            continue
        if inspect.isclass(obj):
            for mname, member in vars(obj).items():
                if mname.startswith("_") and mname != "__init__":
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    funcs = [member.__func__]
                elif isinstance(member, property):
                    funcs = [f for f in (member.fget, member.fset) if f is not None]
                else:
                    funcs = [member]
                for f in funcs:
                    f = inspect.unwrap(f)
                    if inspect.isfunction(f):
                        out[f"{name}.{mname}"] = f
        elif callable(obj):
            f = inspect.unwrap(obj)  # functools.lru_cache, contextlib.contextmanager, ...
            if inspect.isfunction(f):
                out[name] = f
    return out


def _typing_namespace(mod):
    """The module's namespace plus what its ``if TYPE_CHECKING:`` blocks import."""
    ns = dict(vars(mod))
    path = Path(mod.__file__)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.If) and (getattr(node.test, "id", None) == "TYPE_CHECKING"
                                         or getattr(node.test, "attr", None) == "TYPE_CHECKING"):
            imports = [n for n in node.body if isinstance(n, (ast.Import, ast.ImportFrom))]
            exec(compile(ast.Module(body=imports, type_ignores=[]), str(path), "exec"), ns)
    return ns


def _params(fn):
    """The parameters that need an annotation: all but self/cls, *args and **kwargs."""
    params = list(inspect.signature(fn).parameters.values())
    if params and params[0].name in ("self", "cls") and "." in fn.__qualname__:
        params = params[1:]
    return [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def test_every_module_is_checked_or_listed_as_not_yet():
    modules = _all_modules()
    unplaced = [m for m in modules if m not in CHECKED and not _not_yet(m)]
    both = [m for m in CHECKED if _not_yet(m)]
    missing = [m for m in CHECKED if m not in modules]
    assert not unplaced, f"modules neither in CHECKED nor in NOT_YET: {unplaced}"
    assert not both, f"modules both in CHECKED and in NOT_YET: {both}"
    assert not missing, f"CHECKED names modules that do not exist: {missing}"


@pytest.mark.parametrize("name", _all_modules())
def test_public_callables_are_annotated(name):
    mod = _module_to_check(name)
    problems = []
    for qual, fn in _public_callables(mod).items():
        ann = fn.__annotations__
        problems += [f"{qual}: parameter {p.name!r}" for p in _params(fn) if p.name not in ann]
        if "return" not in ann:
            problems.append(f"{qual}: return")
    assert not problems, f"{name}: missing annotations: {problems}"


@pytest.mark.parametrize("name", _all_modules())
def test_annotations_are_deferred_and_name_what_the_module_imports(name):
    mod = _module_to_check(name)
    funcs = _public_callables(mod)
    if not funcs:
        return
    assert getattr(mod, "annotations", None) is __future__.annotations, \
        f"{name} defines public callables but lacks 'from __future__ import annotations'"
    ns = _typing_namespace(mod)
    problems = []
    for qual, fn in funcs.items():
        for key, ann in fn.__annotations__.items():
            try:
                eval(ann, ns) if isinstance(ann, str) else None  # noqa: S307 - the package's own source
            except Exception as err:  # noqa: BLE001
                problems.append(f"{qual}: {key}: {ann!r} ({type(err).__name__}: {err})")
    assert not problems, f"{name}: annotations that do not evaluate: {problems}"


def test_the_checks_see_missing_annotations():
    import types

    mod = types.ModuleType("robust_saliency._typing_probe")
    exec("def f(a, b: int, *args, **kw) -> int: ...\n"
         "def g(x: int): ...\n"
         "def _private(y): ...\n"
         "class C:\n"
         "    def __init__(self, z): ...\n"
         "    def m(self) -> None: ...\n", mod.__dict__)
    for obj in vars(mod).values():
        if callable(obj) and not isinstance(obj, type(print)):
            obj.__module__ = mod.__name__
    funcs = _public_callables(mod)
    assert sorted(funcs) == ["C.__init__", "C.m", "f", "g"]
    assert [p.name for p in _params(funcs["f"])] == ["a", "b"]
    assert [p.name for p in _params(funcs["C.__init__"])] == ["z"]
    assert "return" not in funcs["g"].__annotations__
