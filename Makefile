# Two commands for a fresh machine: `make workbench` and `make test`.
# Both create .venv from pyproject.toml on first use and reuse it after.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch/torchvision are pinned to the releases that lie on this machine's disk (docs/install.md).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: venv test test-fast workbench lab bench lint wheel clean docs docs-build docs-images

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps facenet-pytorch==2.5.3
	# Quantus (benchmarks/explanation_checks.py) requires opencv-python, which would shadow the headless
	# OpenCV: it goes in without its requirements; the ones it imports are the `checks` extra
	$(PY) -m pip install --quiet --no-deps quantus==0.6.0
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
	$(VENV)/bin/ruff check cqa_core workbench tests benchmarks tools
	$(VENV)/bin/lint-imports
	$(PY) tools/import_cycles.py

# dist/cqa_face-*.whl (+ sdist) with the weights, the dashboard notebook and voila.json; see docs/install.md
wheel: $(STAMP)
	$(PY) -m build --outdir dist .

# the documentation site (mkdocs.yml): `make docs` serves it at http://127.0.0.1:8000, `make docs-build`
# writes site/ (--strict); both run the notebooks so their pages show outputs (tests/test_docs_site.py
# builds without running them); plotly figures as HTML (the widgets keep their saved state)
DOCS_ENV := CQA_DOCS_EXECUTE=true PLOTLY_RENDERER=notebook_connected CQA_GALLERY_PEOPLE=12 CQA_TORCH_THREADS=1 OMP_NUM_THREADS=1 NO_MKDOCS_2_WARNING=1

docs: $(STAMP)
	$(DOCS_ENV) $(VENV)/bin/mkdocs serve

docs-build: $(STAMP)
	$(DOCS_ENV) $(VENV)/bin/mkdocs build --strict --site-dir site

# docs/images/*.webp: screenshots of the real workbench (bundled model, a fixed list of LFW photos)
# through the browser tests' headless Chromium; needs chromium and LFW (tools/docs_images.py)
docs-images: $(STAMP)
	PYTHONPATH=. $(PY) tools/docs_images.py

clean:
	rm -rf $(VENV) build dist *.egg-info site
