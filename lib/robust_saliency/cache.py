"""On-disk caching helpers: stable configuration hashes, atomic writes, checksummed loads.

* ``config_hash(obj)``: sha256 of a canonical JSON form of nested dicts, lists, tuples,
  numbers, strings, tensors, arrays, dataclasses and modules (same value -> same hash, in
  any process, on any platform).
* ``atomic_save(obj, path)`` / ``load_verified(path)``: ``torch.save`` into a temporary file
  in the target folder, fsync, ``os.replace``; the file embeds the sha256 of its payload, so a
  truncated or corrupt file is detected on load (``None`` and a warning, never an exception),
  and a reader never sees a half-written file.
* ``atomic_write_json(obj, path)``: the same for plain, human-readable JSON (results files).
* ``cached(key, fn, cache_dir)``: memoize an arbitrary computation on disk under
  ``config_hash(key)``.  Cached tensors live on the CPU (``to_cpu``): a hit and a miss return
  the same thing whatever device computed it.
* ``module_closure(name)`` / ``source_hash(*names)``: the package modules a module imports,
  transitively (read from their source, lazy imports inside functions included), and a hash of
  their source: the code part of a cache key, so that a change to the code a cached result
  depends on is a miss, with no version number kept by hand.

File format of ``atomic_save``: ``MAGIC`` (8 bytes), the 32-byte sha256 digest of the payload,
then the payload (a ``torch.save`` archive).  Load such files with ``load_verified``.
"""
from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import hashlib
import importlib.util
import io
import json
import math
import os
import tempfile
import warnings
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["config_hash", "canonical", "to_jsonable", "to_cpu", "atomic_write_bytes", "atomic_save",
           "load_verified", "atomic_write_json", "cached", "module_closure", "source_hash", "MAGIC"]

MAGIC = b"RSCACHE1"
_DIGEST = 32


# ----------------------------------------------------------------------------------------------
# Canonical form and hashing
# ----------------------------------------------------------------------------------------------

def _tensor_entry(t):
    t = t.detach().to("cpu").contiguous()
    raw = t.reshape(-1).view(torch.uint8) if t.numel() else t.new_empty(0, dtype=torch.uint8)
    return {"__tensor__": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
            "sha256": hashlib.sha256(raw.numpy().tobytes()).hexdigest()}


def _number(x):
    """Numbers by value: an integral finite float hashes like the int (``lr=1`` == ``lr=1.0``)."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    if not math.isfinite(x):
        return {"__float__": repr(x)}  # nan, inf, -inf: JSON has no literal for them
    if x.is_integer() and abs(x) < 2 ** 53:
        return int(x)
    return x


def canonical(obj: object) -> Any:
    """A JSON-serialisable canonical form of ``obj`` (the input of ``config_hash``).

    dict keys become strings and are sorted at dump time; lists and tuples are the same
    sequence; sets are sorted; tensors and arrays are (dtype, shape, sha256 of the bytes);
    dataclasses are their class name and fields; ``nn.Module`` is its repr and its
    state_dict; other objects need a ``fingerprint`` attribute or raise ``TypeError``
    (a repr with a memory address would make the hash change between runs).
    """
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (bool, int, float, np.bool_, np.integer, np.floating)):
        return _number(obj)
    if isinstance(obj, torch.Tensor):
        return _tensor_entry(obj)
    if isinstance(obj, np.ndarray):
        return _tensor_entry(torch.from_numpy(np.ascontiguousarray(obj)))
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            key = k if isinstance(k, str) else json.dumps(canonical(k), sort_keys=True)
            out[key] = canonical(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        items = [canonical(v) for v in obj]
        return {"__set__": sorted(items, key=lambda v: json.dumps(v, sort_keys=True))}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return {"__dataclass__": type(obj).__qualname__, **fields}
    if isinstance(obj, torch.nn.Module):
        return {"__module__": repr(obj), "state": canonical(obj.state_dict())}
    if isinstance(obj, enum.Enum):
        return canonical(obj.value)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (torch.dtype, torch.device)):
        return str(obj)
    if callable(obj) and hasattr(obj, "__qualname__") and hasattr(obj, "__module__"):
        return {"__callable__": f"{obj.__module__}.{obj.__qualname__}"}
    if hasattr(obj, "fingerprint"):
        return {"__fingerprint__": canonical(obj.fingerprint)}
    raise TypeError(f"config_hash: cannot canonicalise a {type(obj).__name__!r} object; "
                    f"accepted: None, str, numbers, dict, list, tuple, set, tensors, arrays, "
                    f"dataclasses, nn.Module, paths, or objects with a 'fingerprint'")


def config_hash(obj: object) -> str:
    """sha256 hex digest of the canonical JSON of ``obj`` (stable across runs and processes)."""
    blob = json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def to_jsonable(obj: object) -> Any:
    """Plain JSON types for a results file: tensors/arrays -> lists, numpy scalars -> Python,
    dataclasses -> dicts, paths -> str, non-finite floats -> None (JSON has no NaN)."""
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        obj = float(obj)
        return obj if math.isfinite(obj) else None
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, (PurePath, torch.dtype, torch.device)):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    raise TypeError(f"to_jsonable: cannot convert a {type(obj).__name__!r} object to JSON")


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it (nested in dicts, lists and tuples) detached and on the CPU;
    anything else unchanged.  What a cache stores and returns: ``load_verified`` maps onto the CPU,
    so a value computed on a GPU is brought there before it is saved and returned, and a hit and
    a miss give the same tensors on the same device (on the CPU the numbers are untouched)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        items = [to_cpu(v) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    return obj


# ----------------------------------------------------------------------------------------------
# Atomic writes
# ----------------------------------------------------------------------------------------------

def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_save(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically, with the payload's sha256 embedded (see module doc)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    return atomic_write_bytes(MAGIC + hashlib.sha256(payload).digest() + payload, path)


def load_verified(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                  weights_only: bool = True) -> Any:
    """The object saved by ``atomic_save`` at ``path``; ``None`` if missing, ``None`` and a
    ``RuntimeWarning`` if truncated, corrupt (checksum mismatch) or unreadable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        warnings.warn(f"cache file {path} cannot be read ({err}); ignoring it", RuntimeWarning,
                      stacklevel=2)
        return None
    head = len(MAGIC) + _DIGEST
    if len(data) < head or data[:len(MAGIC)] != MAGIC:
        reason = "truncated or not a robust_saliency cache file"
    elif hashlib.sha256(data[head:]).digest() != data[len(MAGIC):head]:
        reason = "checksum mismatch"
    else:
        try:
            return torch.load(io.BytesIO(data[head:]), map_location=map_location,
                              weights_only=weights_only)
        except Exception as err:  # noqa: BLE001 - any unpickling failure means "unusable"
            reason = f"cannot be unpickled: {type(err).__name__}: {err}"
    warnings.warn(f"cache file {path} is corrupt ({reason}); ignoring it", RuntimeWarning,
                  stacklevel=2)
    return None


def atomic_write_json(obj: object, path: str | os.PathLike, indent: int | None = 2) -> Path:
    """Write ``obj`` (converted by ``to_jsonable``) as JSON to ``path`` atomically."""
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n"
    return atomic_write_bytes(text.encode(), path)


def _load_json_entry(path, key_hash):
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    try:
        entry = json.loads(text)
        blob = json.dumps(entry["value"], sort_keys=True, separators=(",", ":"))
        ok = (entry["sha256"] == hashlib.sha256(blob.encode()).hexdigest()
              and entry["key"] == key_hash)
    except (ValueError, KeyError, TypeError) as err:
        ok, entry = False, err
    if not ok:
        warnings.warn(f"cache file {path} is corrupt; ignoring it", RuntimeWarning, stacklevel=3)
        return None
    return entry


def cached(key: object, fn: Callable[[], Any], cache_dir: str | os.PathLike | None, fmt: str = "torch",
           name: str = "result") -> Any:
    """``fn()``, memoized on disk under ``config_hash(key)`` in ``cache_dir`` (None = no cache).

    ``fmt="torch"``: any ``torch.save``-able result (loaded with ``weights_only=False``: keep
    cache folders private); ``fmt="json"``: JSON-able results, returned after a JSON round trip
    also on a miss, so hit and miss give the same types.  A corrupt file is recomputed.
    """
    if fmt not in ("torch", "json"):
        raise ValueError(f"fmt={fmt!r} is not valid; accepted: ('torch', 'json')")
    if cache_dir is None:
        return fn()
    key_hash = config_hash(key)
    path = Path(cache_dir) / f"{name}-{key_hash[:32]}.{'pt' if fmt == 'torch' else 'json'}"
    if fmt == "torch":
        entry = load_verified(path, weights_only=False)
        if isinstance(entry, dict) and entry.get("key") == key_hash:
            return entry["value"]
        value = to_cpu(fn())
        atomic_save({"key": key_hash, "value": value}, path)
        return value
    entry = _load_json_entry(path, key_hash)
    if entry is not None:
        return entry["value"]
    value = json.loads(json.dumps(to_jsonable(fn()), allow_nan=False))
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"))
    atomic_write_json({"key": key_hash, "sha256": hashlib.sha256(blob.encode()).hexdigest(),
                       "value": value}, path)
    return value


# ----------------------------------------------------------------------------------------------
# The code in a cache key
# ----------------------------------------------------------------------------------------------

_PACKAGE = __name__.rpartition(".")[0]  # "robust_saliency"


def _module_file(name):
    """The source file of package module ``name`` (None if it is not one of the package's)."""
    if name != _PACKAGE and not name.startswith(_PACKAGE + "."):
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    return Path(origin) if origin and origin.endswith(".py") else None


def _imports(name, path):
    """The package modules that module ``name`` (at ``path``) imports anywhere in its source,
    with the packages their import runs (every parent's ``__init__``)."""
    is_pkg = path.name == "__init__.py"
    here = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)  # "from . import x": x may be a module
    out = set()
    for mod in found:
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
            sub = ".".join(parts[:i])
            if _module_file(sub) is not None:
                out.add(sub)
    return out


@functools.lru_cache(maxsize=None)
def module_closure(name: str) -> tuple[str, ...]:
    """The sorted names of the package modules that importing ``name`` (a module of this package)
    runs or may run: ``name``, every package module it imports anywhere in its source (imports
    inside functions included), and theirs, transitively; parent packages' ``__init__`` too."""
    if _module_file(name) is None:
        raise ValueError(f"module_closure: {name!r} is not a module of the {_PACKAGE} package")
    seen, todo = set(), [name]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        parts = mod.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(_imports(mod, _module_file(mod)) - seen)
    return tuple(sorted(seen))


def source_hash(*names: str | object) -> str:
    """sha256 of the source of every module in the closure (``module_closure``) of ``names``
    (modules of this package, or objects whose ``__module__`` is one): the same code gives the
    same hash in any checkout (line endings normalised), any change to one of those files another."""
    mods = set()
    for n in names:
        mods.update(module_closure(n if isinstance(n, str) else n.__module__))
    h = hashlib.sha256()
    for mod in sorted(mods):
        text = _module_file(mod).read_text(encoding="utf-8").replace("\r\n", "\n")
        h.update(f"{mod}\0{hashlib.sha256(text.encode()).hexdigest()}\n".encode())
    return h.hexdigest()
