"""One registry shape for every family of named things (attributions, metrics, attacks,
training methods): ``REGISTRY.get(name, **hyperparameters)`` returns a configured object
that carries its metadata.

* ``Registry(kind, entries)`` maps names to factories; ``get`` raises a ``ValueError`` that
  names the parameter (``kind=``) and the accepted names.
* ``Configured`` is a function with hyperparameters bound, plus metadata given as keyword
  attributes (``differentiable``, ``higher_is_better``, ``needs_fit``, ``units``, ...).  Its
  ``configure(**hp)`` checks each name against the function's signature (after the
  ``n_args`` data arguments) and returns a copy with them bound; calling it calls the
  function with the bound hyperparameters, which keyword arguments of the call override.

Training methods are classes (``training.Method``) whose constructor is the factory, so their
registry holds the classes themselves.  This module is a leaf: it imports nothing from the
package.
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, ItemsView, Iterator, Mapping, Sequence

__all__ = ["Registry", "Configured"]


class Configured:
    """``fn`` with hyperparameters ``hparams`` bound and metadata ``meta`` as attributes.

    ``n_args``: how many leading parameters of ``fn`` are data (e.g. ``model, x, target``),
    not hyperparameters.  ``fixed``: parameter names that are call options, never bound
    (e.g. ``create_graph``).
    """

    def __init__(self, name: str, fn: Callable[..., Any], n_args: int,
                 hparams: Mapping[str, Any] | None = None, fixed: Sequence[str] = (), **meta: Any) -> None:
        self.name, self.fn, self.n_args, self.fixed = name, fn, n_args, tuple(fixed)
        self.hparams = dict(hparams or {})
        self.meta = dict(meta)
        for k, v in meta.items():
            setattr(self, k, v)
        self.__doc__ = fn.__doc__
        self.__name__ = name

    def accepted(self) -> dict[str, Any]:
        """``{name: default}`` of the hyperparameters ``configure`` accepts (``inspect._empty``
        for required ones)."""
        params = list(inspect.signature(self.fn).parameters.values())[self.n_args:]
        return {p.name: p.default for p in params
                if p.name not in self.fixed and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def configure(self, **hparams: Any) -> Configured:
        """A copy with ``hparams`` bound (on top of those already bound)."""
        accepted = self.accepted()
        unknown = sorted(set(hparams) - set(accepted))
        if unknown:
            raise ValueError(f"{self.name!r} got unknown hyperparameters {unknown}; "
                             f"accepted: {sorted(accepted)}")
        return type(self)(self.name, self.fn, self.n_args, {**self.hparams, **hparams},
                          self.fixed, **self.meta)

    def missing(self) -> list[str]:
        """Required hyperparameters not bound yet."""
        return [k for k, v in self.accepted().items()
                if v is inspect.Parameter.empty and k not in self.hparams]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **{**self.hparams, **kwargs})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.hparams.items()))
        return f"{type(self).__name__}({self.name}{', ' if args else ''}{args})"


class Registry:
    """Named factories of one ``kind``; ``get(name, **hp)`` builds the configured object."""

    def __init__(self, kind: str, entries: Mapping[str, Any]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> Any:
        return self.entry(name)

    def items(self) -> ItemsView[str, Any]:
        return self._entries.items()

    def entry(self, name: str) -> Any:
        """The registered factory itself (a ``Configured`` template or a class)."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"{self.kind}={name!r} is not known; accepted: {list(self._entries)}") from None

    def get(self, name: str, **hparams: Any) -> Any:
        entry = self.entry(name)
        return entry.configure(**hparams) if isinstance(entry, Configured) else entry(**hparams)

    def where(self, **meta: Any) -> tuple[str, ...]:
        """Names whose metadata equal ``meta`` (e.g. ``where(differentiable=True)``)."""
        return tuple(n for n, e in self._entries.items()
                     if all(getattr(e, k, None) == v for k, v in meta.items()))
