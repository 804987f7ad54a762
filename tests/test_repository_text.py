"""What a clone shows its readers: no absolute path of a machine and no reference to a document
or tracker outside the repository, in any tracked text file -- code, docs, settings, and the
committed outputs (notebooks' outputs and ``results/``) included."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BINARY = (".png", ".pdf", ".pt", ".npz", ".npy", ".pkl", ".jpg", ".jpeg", ".gz", ".zip")

# An absolute path of some machine: a Unix home, root or scratch directory, or a Windows drive.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:home|root|tmp|work|Users|mnt|opt|var|private|scratch|data)/[\w.-]+"
                           r"|\b[A-Z]:\\\\?(?:Users|Documents)")
# A document or tracker a clone does not have: an internal spec, a sibling directory, an issue number.
OUTSIDE = re.compile(r"(?-i:\bSPEC\b)(?!S)|\.\./shared/|\bSTYLE\.md\b|\bissue[ -]#?\d+", re.IGNORECASE)


# this file's own examples; .gitignore's patterns start with "/" to mean the repository's root
SELF_AND_IGNORES = ("tests/test_repository_text.py", ".gitignore")


def tracked_text_files():
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout: nothing committed to scan")
    for name in out.stdout.splitlines():
        path = ROOT / name
        if path.suffix.lower() not in BINARY and path.is_file():
            yield name, path.read_text(encoding="utf-8", errors="replace")


def findings(text, pattern):
    return [m.group(0) for m in pattern.finditer(text)]


def test_no_absolute_machine_paths():
    bad = {name: hits[:3] for name, text in tracked_text_files()
           if (hits := findings(text, ABSOLUTE_PATH)) and name not in SELF_AND_IGNORES}
    assert not bad, f"absolute paths of a machine in committed files: {bad}"


def test_no_references_outside_the_repository():
    bad = {name: hits[:3] for name, text in tracked_text_files()
           if (hits := findings(text, OUTSIDE)) and name not in SELF_AND_IGNORES}
    assert not bad, f"references to documents outside the repository: {bad}"


@pytest.mark.parametrize("text,hit", [
    ("saved to /home/alice/project/figures/a.png", True),
    ('"/tmp/tmpab12/figures/00_tour/x.png"', True),
    ("/work/main/results/01_cpu.json", True),
    (r"C:\Users\bob\repo", True),
    ("figures/00_tour/x.png", False),
    ("https://download.pytorch.org/whl/cpu", False),
    ("see docs/ARCHITECTURE.md", False),
    ("ratio 3/tmp", False),
])
def test_the_path_pattern_catches_machine_paths_only(text, hit):
    assert bool(findings(text, ABSOLUTE_PATH)) is hit


@pytest.mark.parametrize("text,hit", [
    ("(SPEC section 7)", True), ("SPEC §9", True), ("../shared/tools/x.py", True), ("issue 11", True),
    ("p3.SPECS[name]", False), ("a spec of the model", False), ("the issues P2's code raises", False),
])
def test_the_reference_pattern_catches_outside_documents_only(text, hit):
    assert bool(findings(text, OUTSIDE)) is hit
