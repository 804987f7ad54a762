"""Tests of robust_saliency.methods: the one explicit registry of training methods."""
import subprocess
import sys
import textwrap

import pytest

from robust_saliency import methods, regularizers, training


def test_registry_lists_ce_and_every_regularizer():
    assert methods.NAMES[0] == "ce" and methods.METHODS["ce"] is training.CE
    assert set(methods.NAMES) == {"ce", *regularizers.NAMES, "at_pgd", "at_fgsm", "norm_regularized_at",
                                   "gaussian_noise", "group_dro"}
    for name, cls in methods.METHODS.items():
        assert cls.name == name and issubclass(cls, training.Method)
    m = methods.get("l2", eps=4, lam=0.5)
    assert isinstance(m, regularizers.L2) and m.hparams["lam"] == 0.5


def test_unknown_method_names_the_accepted_ones():
    with pytest.raises(ValueError, match=r"method='no_such' is not known; accepted: \['ce', 'l2'"):
        methods.get("no_such")


_BROKEN = textwrap.dedent("""
    import importlib.abc, sys

    class Broken(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "robust_saliency.regularizers":
                raise ImportError("simulated breakage in regularizers")
            return None

    sys.meta_path.insert(0, Broken())
    try:
        from robust_saliency import {module}
        {call}
    except ImportError as err:
        print("ImportError:", err)
    except ValueError as err:
        print("ValueError:", err)
    else:
        print("no error")
""")


@pytest.mark.parametrize("module,call", [
    ("methods", "methods.get('l2')"),
    ("experiments", "experiments.validate(methods=['ce', 'l2'])"),
])
def test_a_broken_method_module_surfaces_as_an_import_error(module, call):
    """A broken regularizers module must fail loudly, not read as "method 'l2' is not known"."""
    out = subprocess.run([sys.executable, "-c", _BROKEN.format(module=module, call=call)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ImportError: simulated breakage in regularizers"), out.stdout
