# Two commands do all the set-up: `make demo` (the whole pipeline) and `make test`.
VENV ?= .venv
PYTHON ?= python3
# Absolute: scripts run it from other directories (install_openmmlab.sh cds into mmcv's source).
VENV_DIR := $(abspath $(VENV))
PY := $(VENV_DIR)/bin/python
STAMP := $(VENV_DIR)/.installed

.PHONY: setup doctor demo test bench clean

setup: $(STAMP)

# torch/torchvision first, from the pinned pair, so that no later resolve can pick another build.
$(STAMP): pyproject.toml scripts/install_system_deps.sh scripts/install_openmmlab.sh Makefile
	bash scripts/install_system_deps.sh
	$(PYTHON) -m venv "$(VENV_DIR)"
	"$(PY)" -m pip install --quiet --upgrade pip
	"$(PY)" -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	"$(PY)" -m pip install --quiet -e '.[pipeline,test,postgres]'
	PYTHON="$(PY)" bash scripts/install_openmmlab.sh
	"$(VENV_DIR)/bin/itpn" doctor
	touch $@

doctor: setup
	"$(VENV_DIR)/bin/itpn" doctor

demo: setup
	"$(VENV_DIR)/bin/itpn" demo

test: setup
	"$(PY)" -m pytest

bench: setup
	"$(PY)" benchmarks/throughput.py --small

clean:
	rm -rf "$(VENV_DIR)"
