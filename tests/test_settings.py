"""The typed settings object: one frozen dataclass per notebook built from the declarations, nested
per part, equal as a mapping to the validated parameters it was built from."""
import dataclasses

import pytest

from robust_saliency import settings as S
from robust_saliency.papers import p1, p2, p3, p4


@pytest.mark.parametrize("make", [lambda: p1.settings("smoke", methods=["ce", "l2"])[0], lambda: p2.settings("smoke"),
                                  lambda: p3.settings("smoke"), lambda: p4.settings("smoke")])
def test_each_notebook_gets_a_frozen_dataclass_that_reads_as_its_validated_dict(make):
    s = make()
    assert isinstance(s, S.Settings) and dataclasses.is_dataclass(s)
    flat = dict(s)
    assert S.build(s._notebook, flat) == s and list(flat) == list(s)  # round trip, same order
    names = {f.name for f in dataclasses.fields(s)}
    for key, value in flat.items():
        top = key if key in names else key.split("_", 1)
        obj = getattr(s, top) if isinstance(top, str) else getattr(getattr(s, top[0]), top[1])
        assert obj == value, key
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seeds = [5]


def test_parts_are_nested_and_each_field_states_its_unit():
    s = p4.settings("smoke")
    assert s.block.lr == s["block_lr"] and s.shapes.l2_eps == s["shapes_l2_eps"]
    assert type(s.block).__name__ == "BlockPartSettings" and isinstance(s.block, S.Settings)
    units = {f.name: f.metadata["param"].unit for f in dataclasses.fields(s.block)}
    assert units["pgd_linf_eps"] == "0-255 pixel units" and units["pgd_l2_eps"] == "input units (L2 norm)"
    assert units["num_epochs"] == "epochs"
    assert s.units()["shapes_l2_eps"] == "input units (L2 norm)"
    assert p4.section(s, "block")["lr"] == s.block.lr  # the part's settings by name, as before


def test_unset_parameters_are_absent_not_none():
    s = p2.settings("smoke")
    assert "weights" not in s  # not set by any layer: the code's default applies
    with pytest.raises(AttributeError, match="'weights' is not set"):
        s.weights


def test_build_and_replace_validate_field_by_field():
    s = p4.settings("smoke")
    with pytest.raises(ValueError, match=r"block_pgd_linf_eps=300.*0-255 pixel units"):
        s.replace(block_pgd_linf_eps=300)
    assert s.replace(seeds=[0, 1]).seeds == [0, 1] and s.seeds == [0]
    with pytest.raises(ValueError, match="'block_lrr' is not a parameter of 04_marginal_density"):
        S.build("04_marginal_density", {**dict(s), "block_lrr": 0.1})
