# A Makefile-driven audiobook: one target per chapter, each depending on its transcript, so
# `make -f examples/audiobook.mk -j2` renders chapters in parallel and an edit re-renders only
# that chapter (and, inside it, only the changed chunks: the chunk cache is shared by all jobs).
HIGGS    ?= .venv/bin/higgs
SRC      := transcripts/book
OUT      := build/mk
VOICES   := --voice NARRATOR=otis --voice MAYA=ava --voice TOM=brock
CHAPTERS := $(patsubst $(SRC)/%.txt,$(OUT)/%.flac,$(sort $(wildcard $(SRC)/*.txt)))

all: $(OUT)/book.flac

$(OUT):
	mkdir -p $@

# Each chapter also writes its manifest (timings, seeds, cache hits) beside the audio.
$(OUT)/%.flac: $(SRC)/%.txt | $(OUT)
	$(HIGGS) generate -t $< -o $@ $(VOICES) --chunk paragraph --seed 7 --quiet --json > $(OUT)/$*.json

$(OUT)/book.flac: $(CHAPTERS)
	$(HIGGS) bind $^ -o $@ --quiet

clean:
	rm -rf $(OUT)

.PHONY: all clean
