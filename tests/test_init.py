"""The package docstring lists modules that exist, and every listed module imports."""
import importlib
import re
from pathlib import Path

import robust_saliency

PKG = Path(robust_saliency.__file__).parent


def test_listed_modules_are_the_package_modules():
    listed = re.search(r"Modules \(one concept each\):(.*?)\.\n", robust_saliency.__doc__, re.S)
    names = {n.strip() for n in listed.group(1).replace("\n", " ").split(",")}
    present = {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"}
    present |= {p.parent.name for p in PKG.glob("*/__init__.py")}  # subpackages
    assert names == present
    for name in sorted(names):
        importlib.import_module(f"robust_saliency.{name}")
