"""One registry shape: every family answers get(name, **hp) with a configured object."""
import pytest

from robust_saliency import attacks, attributions, methods, metrics, regularizers
from robust_saliency.registry import Configured, Registry


def _f(a, b, k=1, mode="x"):
    return (a, b, k, mode)


def test_configured_binds_overrides_and_rejects_unknown_names():
    c = Configured("f", _f, 2, flavour="plain")
    assert c.flavour == "plain" and c.accepted() == {"k": 1, "mode": "x"}
    bound = c.configure(k=3)
    assert bound(1, 2) == (1, 2, 3, "x") and bound(1, 2, k=4) == (1, 2, 4, "x")
    assert bound.configure(mode="y")(1, 2) == (1, 2, 3, "y")
    assert c(1, 2) == (1, 2, 1, "x")  # configure returns a copy
    with pytest.raises(ValueError, match=r"unknown hyperparameters \['kk'\]; accepted: \['k', 'mode'\]"):
        c.configure(kk=1)
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        c.configure(b=1)  # a data argument


def test_registry_names_the_kind_and_the_accepted_names():
    r = Registry("widget", {"f": Configured("f", _f, 2, cheap=True), "g": Configured("g", _f, 2, cheap=False)})
    assert r.names == ("f", "g") and r.where(cheap=True) == ("f",)
    with pytest.raises(ValueError, match=r"widget='h' is not known; accepted: \['f', 'g'\]"):
        r.get("h")


@pytest.mark.parametrize("family, name, meta", [
    (attributions, "grad", ("differentiable", "needs_fit", "units")),
    (metrics, "rps", ("kind", "higher_is_better", "units")),
    (attacks, "pgd", ("goal", "units")),
])
def test_every_family_returns_configured_objects_with_metadata(family, name, meta):
    obj = family.get(name, eps=8) if family is not attributions else family.get(name)
    assert isinstance(obj, Configured) and obj.name == name
    for field in meta:
        assert hasattr(obj, field), field
    for n in family.NAMES:
        assert family.REGISTRY.entry(n).name == n


def test_methods_and_regularizers_are_one_lookup():
    for name in regularizers.NAMES:
        assert methods.METHODS.entry(name) is regularizers.REGISTRY.entry(name)
    assert type(methods.get("l2", eps=4)) is type(regularizers.get("l2", eps=4))
    with pytest.raises(ValueError, match="method='nope' is not known"):
        methods.get("nope")
