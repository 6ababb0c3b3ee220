"""Context budgeting for the Higgs engine: the audio a chunk is expected to need, how much rolling context fits
under the job's context limit, and one report per job of what had to be trimmed. Pure arithmetic, no torch.

The limit is ours (`--context-limit`, 8192 positions by default), not the checkpoint's `max_position_embeddings`:
the converted config says 2048, yet its llama3 rope gives the rotary frequencies of upstream's 131072-position
settings, so hub and converted checkpoints get the same limit. Context is fitted against the frames a chunk is
expected to need from its words (with a generous margin), not the whole `--max-new-tokens`: the chunk may still
use every position left over, up to `--max-new-tokens`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..chunking import count_words
from ..options import EXPECTED_FRAMES_EXTRA, EXPECTED_FRAMES_MARGIN, FRAMES_PER_WORD
from ..prompt import fit_context

MIN_NEW_FRAMES = 25  # a chunk must be allowed at least ~1 s of audio or the job is misconfigured


def expected_frames(text: str, max_new_tokens: int) -> int:
    """Frames to keep free for a chunk: its words at 150 a minute, doubled, plus 2 s; at most `max_new_tokens`."""
    words = count_words(text)
    return min(max_new_tokens, math.ceil(words * FRAMES_PER_WORD * EXPECTED_FRAMES_MARGIN) + EXPECTED_FRAMES_EXTRA)


@dataclass(frozen=True)
class Fit:
    """How a chunk fits: `keep` newest context chunks stay, `max_new` frames may be generated."""

    keep: int
    max_new: int
    dropped: int  # context chunks left out to fit
    short: bool  # fewer positions left than the chunk is expected to need


def fit_chunk(base: int, costs: Sequence[int], expected: int, max_new_tokens: int, limit: int) -> Fit:
    """Keep the newest context that leaves `expected` frames free under `limit`; then allow what is left, up to
    `max_new_tokens`. `base` is the prompt without context, `costs` each context chunk's positions (oldest first)."""
    keep = fit_context(base, costs, expected, limit)
    room = limit - base - sum(costs[len(costs) - keep:])
    return Fit(keep, max(0, min(max_new_tokens, room)), len(costs) - keep, room < expected)


@dataclass
class TrimReport:
    """What the budget trimmed over one job, said once at its end (not once per chunk)."""

    limit: int
    chunks: int = 0
    trimmed: list[int] = field(default_factory=list)  # chunks that lost context
    dropped: int = 0  # context chunks left out, over all chunks
    short: list[int] = field(default_factory=list)  # chunks left less room than expected
    largest: int = 0  # the most positions a prompt took

    def note(self, index: int, fit: Fit, prompt_positions: int) -> None:
        self.chunks += 1
        self.largest = max(self.largest, prompt_positions)
        if fit.dropped:
            self.trimmed.append(index)
            self.dropped += fit.dropped
        if fit.short:
            self.short.append(index)

    def message(self) -> str | None:
        """One line with the numbers and what to change, or None when nothing was trimmed."""
        if not self.trimmed and not self.short:
            return None
        parts = []
        if self.trimmed:
            parts.append(f"rolling context trimmed on {len(self.trimmed)} of {self.chunks} chunks ({self.dropped} earlier "
                         f"chunks left out, first at chunk {self.trimmed[0]})")
        if self.short:
            parts.append(f"{len(self.short)} chunks had less room than their text is expected to need (first: chunk "
                         f"{self.short[0]}), so their audio may be cut short")
        return (f"{'; '.join(parts)} to fit --context-limit {self.limit} (largest prompt {self.largest} positions); "
                f"raise --context-limit, lower --context-chunks, or use shorter reference clips")
