# Two commands do all set-up on a fresh machine (Python 3.11 + make):
#   make demo   -- the main job: a short demo on the default shipped model
#   make test   -- the test suite
# Optional: make dft -- GPAW (DFT labelling; needs root for apt-get), built against system libxc/OpenBLAS
#           make torchsim -- TorchSim (batched replicas: mf_calc.torchsim, `mf-calc diffusion --engine torchsim`)
#           make dft-report -- after a DFT labelling sitting: merge the finished frames, then the convergence
#                              report, the baselines on the test split and the data card (in that order)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install dft dft-report torchsim clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mf-calc demo --out demo_output

test: $(STAMP)
	$(PY) -m pytest -q tests

dft: $(STAMP)
	apt-get update -qq && apt-get install -y -qq libxc-dev libopenblas-dev
	CC=g++ $(PY) -m pip install -q gpaw gpaw-data
	$(VENV)/bin/gpaw info | grep -E "gpaw-|libxc|FFTW"

dft-report: $(STAMP)
	$(PY) benchmarks/make_dft_data.py --collect
	$(PY) benchmarks/dft_convergence.py --report
	$(PY) benchmarks/dft_baselines.py
	$(PY) benchmarks/dft_data_card.py

torchsim: $(STAMP)
	$(PY) -m pip install -q -e '.[torchsim]'

clean:
	rm -rf $(VENV) demo_output
