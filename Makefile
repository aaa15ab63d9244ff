# The two commands of the README:
#   make book   -> set up, execute the notebooks with papermill, build the HTML book
#   make test   -> set up, run the unit tests and execute every notebook under nbval (smoke profile)
# Options: make book PROFILE=smoke|laptop|full|auto DEVICE=auto|cpu|cuda ONLY="01_inference"
#          CELL_TIMEOUT=seconds (per cell; default: the runner's, 600 for smoke and 1800 otherwise;
#          raise it for the full profile on a CPU; `make test` is smoke-only and defaults to 600)
#          make test TEST_PATHS=notebooks/04_intervenability.ipynb PYTEST_ARGS="-x"

PROFILE ?= auto
DEVICE ?= auto
ONLY ?=
VENV ?= .venv
PYTEST_ARGS ?=
# A cell that runs longer than this fails instead of hanging the run (seconds). Empty: the
# runner picks 600 s for the smoke profile and 1800 s for the others; `make test` uses 600 s.
CELL_TIMEOUT ?=
# nbval waits only 5 s (hard-coded, no option in nbval 0.11) for the outputs of a cell that has
# already finished; on a loaded machine that wait fails cells that ran fine ("Timeout of 5 seconds
# exceeded waiting for output"). notebooks/conftest.py raises it to this many seconds for every
# notebook cell. It bounds only the wait for a finished cell's outputs: a hanging cell is still
# stopped by --nbval-cell-timeout above.
OUTPUT_TIMEOUT ?= 120
# What `make test` runs (the unit tests and every notebook).
TEST_PATHS ?= tests notebooks

.PHONY: book test setup notebooks html clean-book gpu-run

setup:
	@bash tools/bootstrap.sh

notebooks: setup
	$(VENV)/bin/rni-run --profile $(PROFILE) --device $(DEVICE) $(if $(CELL_TIMEOUT),--timeout $(CELL_TIMEOUT),) $(if $(ONLY),--only $(ONLY),)

html: setup
	@bash tools/fetch_mathjax.sh
	$(VENV)/bin/jupyter-book build book/
	@echo "The book is at book/_build/html/index.html"

book: notebooks html

test: setup
	RNI_PROFILE=smoke RNI_OFFLINE=1 RNI_WIDGETS=static RNI_CLAIMS_DIR=$(CURDIR)/runs/nbval-claims MPLBACKEND=Agg RNI_NBVAL_OUTPUT_TIMEOUT=$(OUTPUT_TIMEOUT) $(VENV)/bin/python -m pytest $(TEST_PATHS) --nbval-lax --nbval-cell-timeout=$(or $(CELL_TIMEOUT),600) -p no:cacheprovider $(PYTEST_ARGS)

# The whole book on one GPU under the full profile: pre-build every chapter's models, then run
# every notebook (the rest after a failure too); runs/full_gpu.json has seconds per model and notebook.
gpu-run: setup
	$(VENV)/bin/rni-run --profile full --device cuda --prebuild --keep-going --summary runs/full_gpu.json $(if $(CELL_TIMEOUT),--timeout $(CELL_TIMEOUT),) $(if $(ONLY),--only $(ONLY),)

clean-book:
	rm -rf book/_build book/notebooks
