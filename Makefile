# Two entry points for a fresh machine with Python 3.11 and the package registries:
#   make reproduce   set up .venv, execute every notebook at the cpu profile (in place),
#                    regenerating figures/ and results/
#   make test        set up .venv, run the unit tests and nbval over notebooks/ (smoke profile)
# Also: make lab (JupyterLab on notebooks/), make smoke (papermill at the smoke profile into out/),
#       make gpu-check (every notebook at the smoke profile on CUDA into out/gpu/; needs a GPU),
#       make bench (benchmark scripts), make report (results/REPORT.md), make check-outputs
#       (are the committed notebooks' outputs current?), make compare RERUN=path (a re-run's
#       results against the committed ones: numbers, verdicts, and the numerics that differ).

# Python 3.11, as pyproject.toml's requires-python says; setup stops if PYTHON is another version.
PYTHON ?= $(shell command -v python3.11 || command -v python3 || echo python3.11)
PYTHON_CHECK := import sys; v = sys.version_info[:2]; sys.exit(None if v == (3, 11) else \
  "robust_saliency needs Python 3.11 (requires-python in pyproject.toml); %s is %d.%d: run \
  make PYTHON=/path/to/python3.11 (remove .venv first if that Python made it)." % ((sys.executable,) + v))
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
export PYTHONHASHSEED := 0

.PHONY: setup reproduce report site check-outputs compare smoke sweep gpu-check test unit nbval lab bench clean-cache

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -d $(VENV) || { $(PYTHON) -c '$(PYTHON_CHECK)' && $(PYTHON) -m venv $(VENV); }
	@$(PY) -c '$(PYTHON_CHECK)'
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Execute each notebook in place at the cpu profile: the committed notebooks carry these outputs;
# then write results/REPORT.md, every claim of every paper, from their results.
# The profile comes from the environment, not from papermill's -p: an injected-parameters cell
# would pin profile="cpu" in the committed notebook and make nbval (make test) run the cpu profile.
# Progress bars are off (ROBUST_SALIENCY_PROGRESS=0): the committed outputs hold results only.
# Independent fits run on WORKERS Dask worker processes of one torch thread each (2 on a 2-core
# machine; results are bitwise those of a sequential run at one thread per fit);
# `make reproduce WORKERS=` runs them in the notebook's process instead.
WORKERS ?= 2
reproduce: $(STAMP)
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb (profile cpu, workers: $(or $(WORKERS),none))"; \
	  ROBUST_SALIENCY_WORKERS=$(WORKERS) ROBUST_SALIENCY_PROFILE=cpu ROBUST_SALIENCY_PROGRESS=0 $(VENV)/bin/papermill "$$nb" "$$nb" --cwd notebooks -k python3 --log-level WARNING || exit 1; \
	done
	@ls results/*_cpu.json
	$(PY) -m robust_saliency.report

# One notebook over a parameter grid (robust_saliency.sweep): one executed copy and results JSON
# per point under out/sweep/<notebook>/, points already done skipped, failed points reported while
# the others finish, summary.csv beside them.  Points run on the executor, WORKERS (default 2) at
# once, each point's fits in its own kernel on one thread; WORKERS= runs them one after the other.
#   make sweep NOTEBOOK=notebooks/04_marginal_density.ipynb GRID=grid.yaml [PROFILE=cpu] [KEYS="results.x"]
PROFILE ?= smoke
sweep: $(STAMP)
	@test -n "$(NOTEBOOK)" -a -n "$(GRID)" || { echo "make sweep needs NOTEBOOK=notebooks/<name>.ipynb and GRID=<grid.yaml>"; exit 2; }
	ROBUST_SALIENCY_WORKERS=$(WORKERS) $(PY) -m robust_saliency.sweep "$(NOTEBOOK)" --grid "$(GRID)" --profile $(PROFILE) $(if $(KEYS),--keys $(KEYS))

# results/REPORT.md from the results JSON files (make reproduce ends with it).
report: $(STAMP)
	$(PY) -m robust_saliency.report

# A static HTML site of the executed notebooks, their claims and the report, in site/ (open
# site/index.html; nothing is loaded from the network).
site: $(STAMP)
	$(PY) -m robust_saliency.site

# Fails when a committed notebook's results record a commit older than the last change to the
# library code or settings file it uses (or come from uncommitted code): re-execute it then.
# Not part of make test, so that work in progress can land.
check-outputs: $(STAMP)
	$(PY) -m robust_saliency.report --check

# A re-run against the committed results/: RERUN is its results folder or the root of the clone it
# ran in. Counts the numbers bitwise equal / equal within tolerance / different, lists every
# verdict that changed and the numerics (threads, CPU capability, libraries, device) that differ.
# Fails when a verdict changed; COMPARE_ARGS=--strict also fails unless every number is bitwise equal.
compare: $(STAMP)
	@test -n "$(RERUN)" || { echo "usage: make compare RERUN=path/to/rerun [COMPARE_ARGS='--strict --rtol 1e-6']"; exit 2; }
	$(PY) -m robust_saliency.compare "$(RERUN)" $(COMPARE_ARGS)

# Quick run at the smoke profile into out/ (sources untouched).
smoke: $(STAMP)
	@mkdir -p out
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb (profile smoke)"; \
	  $(VENV)/bin/papermill "$$nb" "out/$$(basename $$nb)" -p profile smoke --cwd notebooks -k python3 --log-level WARNING || exit 1; \
	done

# Every notebook at the smoke profile on the GPU (device=cuda) into out/gpu/ (sources untouched):
# the device path end to end (data on the CPU, models, attacks, maps and caches on CUDA). Stops
# first, with a message, on a machine where torch sees no CUDA device.
gpu-check: $(STAMP)
	@$(PY) -c 'import sys, torch; sys.exit(None if torch.cuda.is_available() else "make gpu-check: torch.cuda.is_available() is False (torch %s, CUDA build %s): run it on a machine with a CUDA GPU and a CUDA build of torch" % (torch.__version__, torch.version.cuda))'
	@mkdir -p out/gpu
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb (profile smoke, device cuda)"; \
	  $(VENV)/bin/papermill "$$nb" "out/gpu/$$(basename $$nb)" -p profile smoke -p device cuda --cwd notebooks -k python3 --log-level WARNING || exit 1; \
	done

# Unit tests plus nbval (lax: every cell must run; cells marked NBVAL_CHECK_OUTPUT are compared)
# over the notebooks at the smoke profile, in one pytest run. Exit code 5 (no tests) fails.
test: $(STAMP)
	ROBUST_SALIENCY_PROFILE=smoke $(PY) -m pytest -p no:cacheprovider tests notebooks \
	  --nbval-lax --nbval-current-env --nbval-cell-timeout=600 -q

unit: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider tests -q

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	@for b in benchmarks/[a-z]*.py; do $(PY) -m benchmarks.$$(basename $$b .py) || exit 1; done

clean-cache:
	rm -rf cache/
