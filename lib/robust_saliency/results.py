"""Where a run writes and what pins it: the repository and cache folders, provenance (git
commit and the code changes outside the run's outputs, package versions, platform, and
``numerics``: what decides whether two runs can agree bitwise) and the results JSON files
(``results/<notebook>_<profile>.json``, written atomically), and the benchmark records that
``make bench`` writes beside them (``benchmark_record``)."""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import cache as _cache
from . import executor as _executor

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import pandas as pd

__all__ = ["repo_root", "default_cache_dir", "code_changes", "numerics", "provenance", "write_results",
           "benchmark_record"]


# ----------------------------------------------------------------------------------------------

def repo_root() -> Path:
    """The repository folder: $ROBUST_SALIENCY_ROOT, else the checkout holding this package
    (editable install), else the nearest parent of the working directory with ``notebooks/``."""
    env = os.environ.get("ROBUST_SALIENCY_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve().parents[2]
    if (here / "pyproject.toml").is_file() or (here / ".git").exists():
        return here
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / "notebooks").is_dir() and (folder / "lib").is_dir():
            return folder
    return cwd


def default_cache_dir() -> Path:
    """$ROBUST_SALIENCY_CACHE, else ``<repo>/cache`` (git-ignored)."""
    env = os.environ.get("ROBUST_SALIENCY_CACHE")
    return Path(env).expanduser() if env else repo_root() / "cache"


def _git(*args):
    """git's stdout (unstripped) for ``args`` run in ``repo_root()``; None if git fails."""
    try:
        out = subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True,
                             timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


_PACKAGES = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy",
             "captum": "captum", "zennit": "zennit", "scipy": "scipy",
             "sklearn": "scikit-learn", "skimage": "scikit-image"}


def _versions():
    out = {}
    for short, dist in _PACKAGES.items():
        try:
            out[short] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[short] = "not installed"
    out["python"] = platform.python_version()
    return out


# What running the notebooks rewrites: a difference there does not unpin the code.
_RUN_OUTPUTS = ("figures/", "results/")


def _is_run_output(path):
    return path.startswith(_RUN_OUTPUTS) or (path.startswith("notebooks/")
                                             and path.endswith(".ipynb"))


def code_changes() -> list[str] | None:
    """Paths (relative to the repository) that differ from the checked-out commit, leaving out
    what executing the notebooks rewrites (``notebooks/*.ipynb``, ``figures/``, ``results/``):
    modified, added, deleted or untracked (not ignored) files.  None outside a git checkout."""
    status = _git("status", "--porcelain", "-z", "--untracked-files=all")
    if status is None:
        return None
    entries, paths = status.split("\0"), []
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if "R" in code or "C" in code:  # a rename or copy: the source path follows
            paths.append(entries[i])
            i += 1
        paths.append(path)
    return sorted({p for p in paths if not _is_run_output(p)})


def _safe(get):
    """``get()``, or None if it raises: provenance never stops a run."""
    try:
        return get()
    except Exception:  # noqa: BLE001 - any failure means "not known here"
        return None


def _match(pattern, text):
    m = re.search(pattern, text or "")
    return m.group(1) if m else None


def _cpu_model():
    """The CPU's model name: /proc/cpuinfo (Linux), sysctl (macOS), else ``platform.processor()``."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        text = cpuinfo.read_text(errors="replace")
        for key in ("model name", "Hardware", "Processor", "cpu model", "uarch"):
            name = _match(rf"(?m)^{key}\s*:\s*(.+?)\s*$", text)
            if name:
                return name
    if platform.system() == "Darwin":
        name = _safe(lambda: subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                            text=True, timeout=5, check=True).stdout.strip())
        if name:
            return name
    return platform.processor() or None


def _numpy_blas():
    import numpy

    deps = numpy.show_config(mode="dicts").get("Build Dependencies", {})
    blas = deps.get("blas") or {}
    return " ".join(str(blas[k]) for k in ("name", "version") if blas.get(k)) or None


# Environment variables that change which kernels run (the thread counts are recorded as counts).
_NUMERICS_ENV = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE")


def numerics(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What decides whether two runs of the same code give bitwise-equal numbers: the CPU kernels
    torch dispatches to (``cpu_capability``: ``torch.backends.cpu.get_cpu_capability()``, the CPU
    model and machine, the environment variables that override them), the libraries (torch and
    numpy versions, torch's BLAS / LAPACK and its MKL version, oneDNN (mkldnn), numpy's BLAS),
    the intra-op and inter-op thread counts and parallel backend, the torch threads of one fit
    (``fit_threads``: the executor's, else the process's) and where fits ran (``executor``), and
    the device: ``params["device"]`` (the notebooks' params carry the resolved one; None when not
    given), with the GPU's name, CUDA and cuDNN versions when CUDA is available.  Every field is read
    defensively (one that cannot be read is None) and none holds a path."""
    config = _safe(torch.__config__.show) or ""
    parallel = _safe(torch.__config__.parallel_info) or ""
    cuda = bool(_safe(torch.cuda.is_available))
    mkldnn = _safe(torch.backends.mkldnn.is_available)
    device = (params or {}).get("device")
    mkl = _match(r"Math Kernel Library Version ([\w.-]+)", config)
    return {
        "cpu_capability": _safe(torch.backends.cpu.get_cpu_capability),
        "cpu_model": _safe(_cpu_model),
        "machine": platform.machine() or None,
        "torch": str(torch.__version__),
        "numpy": _safe(lambda: metadata.version("numpy")),
        "blas": _match(r"BLAS_INFO=(\w+)", config),
        "lapack": _match(r"LAPACK_INFO=(\w+)", config),
        "mkl": mkl.removesuffix("-Product") if mkl else None,
        "mkldnn": (_match(r"(?:MKL-DNN|oneDNN) v([\w.]+)", config) or "available") if mkldnn
        else None if mkldnn is None else "not available",
        "numpy_blas": _safe(_numpy_blas),
        "parallel_backend": _match(r"ATen parallel backend: ([^\n]+)", parallel),
        "threads": _safe(torch.get_num_threads),
        "interop_threads": _safe(torch.get_num_interop_threads),
        "env": {k: os.environ[k] for k in _NUMERICS_ENV if os.environ.get(k)},
        "device": None if device is None else str(device),
        "fit_threads": _safe(lambda: _executor.current().threads or torch.get_num_threads()),
        "executor": _safe(lambda: _executor.current().describe()),
        "cuda_device": _safe(lambda: torch.cuda.get_device_name(0)) if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": _safe(torch.backends.cudnn.version) if cuda else None,
    }


def provenance(params: Mapping[str, Any] | None, seeds: Iterable[int] | None,
               t_start: float | None) -> dict[str, Any]:
    """What pins the code (git commit and the changes outside the run's outputs), package
    versions, platform, profile, seeds, wall time, and ``numerics`` (``numerics(params)``: what
    decides whether another run can give bitwise-equal numbers; ``python -m robust_saliency.compare``
    reads it).

    ``t_start`` is ``time.time()`` taken at the notebook's start (None: wall time unknown).
    ``commit`` is 'unknown' outside a git checkout.  ``code_changes`` lists the files that
    differ from the commit other than the executed notebooks and their figures and results
    (``code_changes()``), and ``dirty`` says whether there are any: a run with
    ``dirty: false`` used exactly the committed code.  Both are None outside git.
    """
    commit = (_git("rev-parse", "HEAD") or "").strip() or "unknown"
    changes = code_changes() if commit != "unknown" else None
    info = {
        "commit": commit,
        "dirty": None if changes is None else bool(changes),
        "code_changes": changes,
        "versions": _versions(),
        "platform": {"system": platform.platform(), "machine": platform.machine(),
                     "processor": platform.processor(), "cpu_count": os.cpu_count()},
        "profile": (params or {}).get("profile"),
        "seeds": list(seeds) if seeds is not None else None,
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": None if t_start is None else round(time.time() - t_start, 3),
    }
    info["platform"]["torch_threads"] = torch.get_num_threads()
    info["platform"]["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    info["numerics"] = numerics(params)
    return info


def write_results(notebook: str | os.PathLike, profile: str, results: object,
                  params: Mapping[str, Any] | None, *, t_start: float | None = None,
                  results_dir: str | os.PathLike | None = None) -> Path:
    """Write ``results/<notebook>_<profile>.json`` atomically; return its path.

    The file holds notebook, profile, params, seeds, provenance and ``results`` (converted by
    ``cache.to_jsonable``: tensors and arrays to lists, NaN/inf to null).  ``results_dir``
    defaults to ``<repo>/results``.
    """
    notebook = Path(str(notebook)).name
    if notebook.endswith(".ipynb"):
        notebook = notebook[: -len(".ipynb")]
    for param, value in (("notebook", notebook), ("profile", profile)):
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError(f"{param}={value!r} is not valid; accepted: a non-empty name of "
                             f"letters, digits, '_', '.', '-'")
    params = dict(params or {})
    seeds = params.get("seeds")
    if seeds is None and params.get("seed") is not None:
        seeds = [params["seed"]]
    doc = {"notebook": notebook, "profile": profile, "params": params, "seeds": seeds,
           "provenance": provenance({**params, "profile": profile}, seeds, t_start),
           "results": results}
    folder = Path(results_dir) if results_dir is not None else repo_root() / "results"
    return _cache.atomic_write_json(doc, folder / f"{notebook}_{profile}.json")


def benchmark_record(filename: str, path: str | os.PathLike | None = None
                     ) -> tuple[pd.DataFrame | None, dict[str, Any] | None]:
    """A ``make bench`` record of one training step per method relative to ``ce`` (the
    ``benchmarks/*_cost.py`` scripts, interleaved side by side): ``(table, doc)`` with ``table`` a
    DataFrame of median seconds, time and autograd-graph memory ratios per method and ``doc`` the
    whole record (config, machine); ``(None, None)`` if ``results/<filename>`` (or ``path``) was
    never written."""
    import pandas as pd

    path = Path(path) if path is not None else repo_root() / "results" / filename
    if not path.is_file():
        return None, None
    doc = json.loads(path.read_text())
    table = pd.DataFrame([{"method": k, "median s / step": v["median_time_s"], "time × ce": v["time_ratio"],
                           "graph memory × ce": v["mem_ratio"]} for k, v in doc["methods"].items()]).set_index("method")
    return table, doc
