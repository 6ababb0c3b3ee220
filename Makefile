# higgs: two commands for a newcomer: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint book book-make clean

install: $(STAMP)  ## create .venv with the higgs command, its engines and the test tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU-capable torch + torchaudio pair first (pinned together: the codec imports torchaudio)
	$(BIN)/pip install --quiet "torch==2.9.1" "torchaudio==2.9.1"
	$(BIN)/pip install --quiet -e ".[higgs,qa,test,ray,serve]"
	# the quality gate's voice check (speaker embeddings); --no-deps: its metadata asks for `webrtcvad` (an sdist that needs
	# a C compiler; the qa extra's webrtcvad-wheels is the same module) and the Python 2 `typing` backport
	$(BIN)/pip install --quiet --no-deps "resemblyzer==0.1.4"
	touch $(STAMP)

demo: install  ## render a three-voice dialogue from a bundled transcript to out/demo.wav
	@mkdir -p out
	$(BIN)/higgs dialogue -t transcripts/demo_dialogue.txt -o out/demo.wav

test: install  ## run the test suite
	$(BIN)/python -m pytest -q

book: install  ## build the sample audiobook (transcripts/book) into build/book; reruns rebuild only what changed
	$(BIN)/higgs build transcripts/book/book.yaml

book-make: install  ## the same book driven by Make itself: per-chapter targets, try `make book-make -j2`
	$(MAKE) -f examples/audiobook.mk HIGGS=$(CURDIR)/$(BIN)/higgs

lint: install
	$(BIN)/ruff check higgs_cli tests bench

clean:
	rm -rf $(VENV) out build .pytest_cache .ruff_cache
