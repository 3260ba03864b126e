# Two commands for a fresh machine: `make workbench` and `make test`.
# Both create .venv from pyproject.toml on first use and reuse it after.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch/torchvision are pinned to the releases that lie on this machine's disk (see README).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: venv test test-fast workbench lab bench lint wheel clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps facenet-pytorch==2.5.3
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not browser"

workbench: $(STAMP)
	$(PY) -m cqa_core.cli workbench

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

# CPU benchmarks (a few minutes); GPU: `bash benchmarks/gpu_check.sh` on a CUDA machine.
bench: $(STAMP)
	PYTHONPATH=. $(PY) benchmarks/explain_speed.py --threads 2
	PYTHONPATH=. $(PY) benchmarks/data_decode.py --n 2000
	PYTHONPATH=. $(PY) benchmarks/align_speed.py --n 50
	PYTHONPATH=. $(PY) benchmarks/train_throughput.py --stem light --batch-size 16 --steps 12 --warmup 2 --device cpu

# style (ruff) and the layer contracts (import-linter, pyproject [tool.importlinter]; docs/architecture.md)
lint: $(STAMP)
	$(VENV)/bin/ruff check cqa_core workbench tests benchmarks
	$(VENV)/bin/lint-imports

# dist/cqa_face-*.whl (+ sdist) with the weights, the dashboard notebook and voila.json; see README "Install"
wheel: $(STAMP)
	$(PY) -m build --outdir dist .

clean:
	rm -rf $(VENV) build dist *.egg-info
