"""Per-job prompt state of the Higgs engine, torch-free (the dry-run preview uses it too): speaker tags, references,
voice locks and anchors, the rolling context window, and the chain a chunk is generated in."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from ..chunking import chains as chunk_chains
from ..options import ANCHOR_TEXT, HiggsSettings
from ..prompt import AudioRef, ContextChunk, Prompt, Reference, Speaker, build_prompt, describe_voice, scene_text
from ..voices import Voice
from . import ChunkRequest


class JobState:
    """Who speaks how in one job: tags, references, voice locks and the rolling context window."""

    def __init__(self, cast: Mapping[str, Voice], settings: HiggsSettings):
        self.settings = settings
        self.voices = dict(cast)
        self.tags = {spk: f"SPEAKER{i}" for i, spk in enumerate(self.voices)}
        self.scene = scene_text(settings.scene, settings.emotion, settings.speed)
        self.history: list[ContextChunk] = []
        self.locks: dict[str, ContextChunk] = {}

    def speakers(self) -> dict[str, Speaker]:
        return {spk: Speaker(self.tags[spk], describe_voice(v.description, v.gender), self.reference(spk))
                for spk, v in self.voices.items()}

    def reference(self, speaker: str) -> Reference | None:
        voice = self.voices[speaker]
        if voice.clip is not None:
            return Reference(AudioRef(clip=str(voice.clip)), voice.transcript)
        lock = self.locks.get(speaker)
        return Reference(AudioRef(chunk=lock.index), lock.text) if lock else None

    def context(self) -> list[ContextChunk]:
        """The newest `context_chunks` generated chunks, minus those already in the prompt as voice locks."""
        if self.settings.context_chunks <= 0:
            return []
        pinned = {c.index for c in self.locks.values()}
        return [c for c in self.history[-self.settings.context_chunks:] if c.index not in pinned]

    def prompt(self, speaker: str, text: str, context: list[ContextChunk]) -> Prompt:
        return build_prompt(self.speakers(), speaker, text, context, scene=self.scene,
                            ref_in_system=self.settings.ref_in_system)

    def record(self, index: int, speaker: str, text: str) -> None:
        """Remember a generated chunk. An anchor (index < 0) becomes its speaker's voice lock; so does a
        clip-less speaker's first chunk when it has no anchor (the engine used chunk by chunk, without a plan)."""
        chunk = ContextChunk(index, speaker, text)
        if index >= 0:
            self.history.append(chunk)
        if self.voices[speaker].clip is None and (index < 0 or speaker not in self.locks):
            self.locks[speaker] = chunk


def anchor_seed(base: int, speaker: str, voice: Voice) -> int:
    digest = hashlib.sha256(f"higgs-anchor:{base}:{speaker}:{voice.name}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def anchors(plan: Any) -> list[ChunkRequest]:
    """One anchor per clip-less speaker, indexed -1, -2, ... in cast order: ANCHOR_TEXT (or the voice profile's
    `engines: {higgs: {anchor: ...}}`, e.g. a sentence in the voice's language) in that voice alone."""
    out = []
    for speaker, voice in plan.cast.items():
        if voice.clip is None:
            text = str(voice.settings("higgs").get("anchor") or ANCHOR_TEXT).strip()
            out.append(ChunkRequest(-(len(out) + 1), speaker, text, voice, anchor_seed(plan.options.seed, speaker, voice)))
    return out


def job_chains(plan: Any) -> list[list[int]]:
    return chunk_chains(plan.chunks, plan.script, plan.options.higgs.chain_words)


def chain_state(plan: Any, index: int) -> JobState:
    """The prompt state chunk `index` is generated in: its chain's earlier chunks, and every anchor."""
    state = JobState(plan.cast, plan.options.higgs)
    for anchor in anchors(plan):
        state.record(anchor.index, anchor.speaker, anchor.text)
    chain = next(c for c in job_chains(plan) if index in c)
    for i in chain[:chain.index(index)]:
        state.record(plan.chunks[i].index, plan.chunks[i].speaker, plan.chunks[i].text)
    return state


