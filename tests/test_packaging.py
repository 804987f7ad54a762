"""requirements.txt's exact pins equal environment.yml's and lie inside pyproject.toml's ranges;
the notebooks are papermill- and nbval-ready; the README and CI give the two commands."""
import json
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement  # packaging: a dependency of pytest
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip().lstrip("-").strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_requirements_and_environment_agree():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    env_text = (ROOT / "environment.yml").read_text()
    pip_section = env_text.split("- pip:", 1)[1].splitlines()
    env = _pins(pip_section)
    assert req, "requirements.txt pins nothing"
    assert req == env
    assert req["torch"] == "2.14.1" and req["torchvision"] == "0.29.1"
    assert "python=3.11" in env_text
    for name in ["papermill", "nbval", "jupyterlab", "matplotlib", "seaborn", "scikit-image",
                 "scikit-learn", "scipy", "captum", "zennit", "tqdm", "ipykernel"]:
        assert name in req, f"{name} is not pinned"
    assert req["captum"] == "0.9.0" and req["zennit"] == "0.5.1"


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pyproject_requirements(project):
    """Every requirement of ``project`` (dependencies and all extras) except references to the
    project's own extras, by normalized name."""
    reqs = [Requirement(r) for r in project.get("dependencies", [])]
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [Requirement(r) for r in extra]
    own = canonicalize_name(project["name"])
    return {canonicalize_name(r.name): r for r in reqs if canonicalize_name(r.name) != own}


def _lock_problems(project, pins):
    """What is wrong between pyproject's ranges and requirements.txt's exact pins: a pyproject
    requirement that the lock does not pin, or pins outside its range; an extra named in a
    self-reference (``robust_saliency[notebooks]``) that does not exist."""
    pins = {canonicalize_name(k): v for k, v in pins.items()}
    problems = []
    for name, req in _pyproject_requirements(project).items():
        if name not in pins:
            problems.append(f"{name} ({req.specifier}) is not pinned in requirements.txt")
        elif not req.specifier:
            problems.append(f"{name} has no range in pyproject.toml")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{name}=={pins[name]} is outside {req.specifier}")
    own = canonicalize_name(project["name"])
    for extra in project.get("optional-dependencies", {}).values():
        for r in map(Requirement, extra):
            if canonicalize_name(r.name) == own:
                problems += [f"unknown extra {e!r}" for e in r.extras
                             if e not in project["optional-dependencies"]]
    return problems


def test_pyproject_ranges_hold_the_lock():
    """pyproject.toml declares ranges; requirements.txt is the exact lock inside them."""
    project = _pyproject()["project"]
    assert project["name"] == "robust_saliency"
    assert "dependencies" not in project.get("dynamic", []), "pyproject declares its own ranges"
    assert {"notebooks", "test"} <= set(project["optional-dependencies"])
    runtime = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert {"torch", "torchvision", "numpy", "captum", "pyyaml"} <= runtime
    assert not runtime & {"pytest", "nbval", "papermill", "jupyterlab"}, "tools are extras"
    pins = _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert _lock_problems(project, pins) == []
    assert (ROOT / "lib" / "robust_saliency" / "__init__.py").exists()


def test_lock_check_catches_a_bad_lock():
    """The same check fails on a lock that is out of range, incomplete, or on a missing extra."""
    project = {"name": "robust_saliency", "dependencies": ["numpy>=2.2,<3", "scipy>=1.15,<2"],
               "optional-dependencies": {"test": ["robust_saliency[notebookz]", "pytest>=9,<10"]}}
    problems = _lock_problems(project, {"numpy": "3.0.0", "pytest": "9.2.0"})
    assert len(problems) == 3, problems
    assert problems[0].startswith("numpy==3.0.0 is outside")
    assert problems[1].startswith("scipy") and problems[1].endswith("not pinned in requirements.txt")
    assert problems[2] == "unknown extra 'notebookz'"
    assert _lock_problems(project | {"optional-dependencies": {}},
                          {"numpy": "2.4.6", "scipy": "1.17.1"}) == []


def test_makefile_python_agrees_with_requires_python():
    """make setup creates .venv with python3.11 and stops on another version; requires-python
    admits exactly 3.11."""
    spec = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert "3.11.0" in spec and "3.11.9" in spec and "3.10.9" not in spec and "3.12.0" not in spec
    mk = (ROOT / "Makefile").read_text()
    assert "PYTHON ?= $(shell command -v python3.11 ||" in mk
    assert "v == (3, 11)" in mk
    recipe = mk.split("\n$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "$(PYTHON) -c '$(PYTHON_CHECK)' && $(PYTHON) -m venv" in recipe
    assert "--no-deps -e ." in recipe


def test_installed_versions_match_pins():
    from importlib.metadata import version

    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    for name in ["torch", "torchvision", "captum", "zennit", "numpy", "scipy"]:
        assert version(name).split("+")[0] == req[name], name


def test_readme_and_ci_give_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    mk = (ROOT / "Makefile").read_text()
    for target in ["reproduce:", "test:", "lab:", "smoke:"]:
        assert target in mk


NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert any(p.name.startswith("00_tour") for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_shape(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    src = "".join(params[0]["source"])
    assert 'os.environ.get("ROBUST_SALIENCY_PROFILE", "cpu")' in src
    # a papermill "injected-parameters" cell would pin the profile and override the environment
    # variable, so nbval under `make test` would run the long cpu profile instead of smoke
    injected = [c for c in nb["cells"] if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    assert not injected, "remove papermill's injected-parameters cell (make reproduce sets the env var)"
    # committed with outputs of the cpu profile, no errors
    assert all(c.get("execution_count") is not None for c in code), "commit the executed notebook"
    for c in code:
        for o in c.get("outputs", []):
            assert o.get("output_type") != "error"
    # no training loop in a notebook
    assert not any(re.search(r"for\s+\w+\s+in\s+range\(\s*(num_)?epochs", "".join(c["source"])) for c in code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_stay_thin(path):
    """Notebooks read like the paper: parameters, calls, tables, figures.  Logic lives in lib/
    (papers/pN.py, evaluation, plotting): no code cell over 20 lines (the parameters cell: 25),
    no lambda, no function or class defined in a notebook."""
    nb = json.loads(path.read_text())
    for i, c in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        src = "".join(c["source"])
        limit = 25 if "parameters" in c.get("metadata", {}).get("tags", []) else 20
        assert len(src.splitlines()) <= limit, f"code cell {i + 1} has {len(src.splitlines())} lines"
        assert not re.search(r"\blambda\b|^\s*(def|class)\s", src, re.M), f"code cell {i + 1} defines logic"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_carry_no_progress_output(path):
    """Progress bars are for interactive runs: ``make reproduce`` turns them off
    (ROBUST_SALIENCY_PROGRESS=0), so a committed notebook holds results, not tqdm frames."""
    nb = json.loads(path.read_text())
    stderr = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not stderr, (f"{len(stderr)} stderr outputs (progress bars or warnings), e.g. "
                        f"{''.join(stderr[0]['text'])[:120]!r}: re-execute with make reproduce")


def test_make_reproduce_turns_progress_off():
    mk = (ROOT / "Makefile").read_text()
    recipe = mk.split("\nreproduce:", 1)[1].split("\n\n", 1)[0]
    assert "ROBUST_SALIENCY_PROGRESS=0" in recipe and "ROBUST_SALIENCY_PROFILE=cpu" in recipe
