# The two commands: `make demo` and `make test`. Both bootstrap .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Every install goes through the constraints file (torch pinned to the CPU wheel).
PIP_INSTALL := $(PIP) install --quiet --disable-pip-version-check -c constraints.txt
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip setuptools wheel
	$(PIP_INSTALL) -e ".[train,dev,realsense]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/edge-ad demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check edge_ad trainer export calibration tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
