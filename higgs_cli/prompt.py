"""Higgs Audio v2 prompts: cast, references, context and chunk text -> the ChatML conversation; pure, no torch.

The layout follows upstream's generation example (boson-ai/higgs-audio `examples/generation.py`) as
rendered by transformers' Higgs Audio v2 chat template:

    <|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\nSYSTEM
    \\n\\n<|scene_desc_start|>\\nSCENE\\n\\nSPEAKER0: description | SPEAKER0: <audio>\\n<|scene_desc_end|><|eot_id|>
    user: "[SPEAKERi] reference transcript" / assistant: <audio>     (references as turn pairs)
    user: "[SPEAKERi] earlier chunk"        / assistant: <audio>     (rolling context)
    user: "[SPEAKERi] this chunk"           / assistant: <|audio_out_bos|>  (generation prompt)

`<audio>` is `<|audio_out_bos|><|AUDIO_OUT|><|audio_eos|>`; the engine expands each `<|AUDIO_OUT|>`
to one token per (delayed) audio frame. `[SPEAKERi]` prefixes appear only in multi-speaker jobs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .options import SCENE_OFF

SYSTEM_SINGLE = "Generate audio following instruction."
SYSTEM_MULTI = (
    "You are an AI assistant designed to convert text into speech.\n"
    "If the user's message includes a [SPEAKER*] tag, do not read out the tag and generate speech for the "
    "following text, using the specified voice.\n"
    "If no speaker tag is present, select a suitable voice on your own."
)
BOS = "<|begin_of_text|>"
EOT = "<|eot_id|>"
AUDIO_TOKEN = "<|AUDIO_OUT|>"
AUDIO_SPAN = f"<|audio_out_bos|>{AUDIO_TOKEN}<|audio_eos|>"
GENERATION_PROMPT = "<|start_header_id|>assistant<|end_header_id|>\n\n<|audio_out_bos|>"
_GENDER_WORDS = {"female": "feminine", "f": "feminine", "woman": "feminine",
                 "male": "masculine", "m": "masculine", "man": "masculine"}
_DEFAULT_DESCRIPTIONS = ("feminine", "masculine")  # upstream alternates these for undescribed speakers


@dataclass(frozen=True)
class AudioRef:
    """An audio item in a prompt: a reference clip (by path) or an earlier generated chunk (by index)."""

    clip: str | None = None
    chunk: int | None = None

    def to_json(self) -> dict[str, Any]:
        if self.clip is not None:
            return {"type": "audio", "path": self.clip}
        return {"type": "audio", "chunk": self.chunk}


@dataclass(frozen=True)
class Reference:
    """How a speaker's voice is pinned: audio plus its transcript (None -> the audio goes in the scene)."""

    audio: AudioRef
    transcript: str | None = None


@dataclass(frozen=True)
class Speaker:
    """One speaker of a job as the model sees it."""

    tag: str  # SPEAKER0, SPEAKER1, ... in cast order
    description: str | None = None
    reference: Reference | None = None


@dataclass(frozen=True)
class ContextChunk:
    """An earlier chunk whose generated audio codes stay in the prompt."""

    index: int
    speaker: str
    text: str


@dataclass(frozen=True)
class Turn:
    role: str  # "user" (text) or "assistant" (audio)
    text: str | None = None
    audio: AudioRef | None = None


@dataclass(frozen=True)
class SceneLine:
    tag: str
    description: str | None = None
    audio: AudioRef | None = None


@dataclass(frozen=True)
class Prompt:
    """A complete prompt for one chunk; `render()` gives its text, `audio_items()` its audio in order."""

    system: str
    scene: str | None
    lines: tuple[SceneLine, ...]
    turns: tuple[Turn, ...]
    shared_turns: int = 0  # the leading turns (references) every chunk of a job repeats

    def shared(self) -> Prompt:
        """System, scene and reference turns: the part common to every prompt of a job (its text has no generation prompt)."""
        return Prompt(self.system, self.scene, self.lines, self.turns[:self.shared_turns], self.shared_turns)

    def audio_items(self) -> list[AudioRef]:
        items = [line.audio for line in self.lines if line.audio is not None]
        return items + [t.audio for t in self.turns if t.audio is not None]

    def render(self, generation: bool = True) -> str:
        """The prompt text with one `<|AUDIO_OUT|>` placeholder per audio item, ending in the generation prompt."""
        out = [BOS, "<|start_header_id|>system<|end_header_id|>\n\n", self.system.strip()]
        scene = self._scene_block()
        if scene:
            out.append(f"\n\n<|scene_desc_start|>\n{scene}\n<|scene_desc_end|>")
        out.append(EOT)
        for turn in self.turns:
            out.append(f"<|start_header_id|>{turn.role}<|end_header_id|>\n\n")
            out.append(AUDIO_SPAN if turn.audio is not None else (turn.text or "").strip())
            out.append(EOT)
        if generation:
            out.append(GENERATION_PROMPT)
        return "".join(out)

    def _scene_block(self) -> str:
        lines = []
        for line in self.lines:
            if line.audio is not None:
                lines.append(f"{line.tag}: {AUDIO_SPAN}")
            else:
                lines.append(f"{line.tag}: {line.description}")
        parts = [p for p in (self.scene.strip() if self.scene else "", "\n".join(lines)) if p]
        return "\n\n".join(parts)

    def conversation(self) -> list[dict[str, Any]]:
        """The prompt as chat messages (transformers' shape; audio items by path or chunk index)."""
        messages: list[dict[str, Any]] = [{"role": "system", "content": [{"type": "text", "text": self.system}]}]
        scene: list[dict[str, Any]] = [{"type": "text", "text": self.scene}] if self.scene else []
        for line in self.lines:
            if line.audio is not None:
                scene += [{"type": "text", "text": f"{line.tag}:"}, line.audio.to_json()]
            else:
                scene.append({"type": "text", "text": f"{line.tag}: {line.description}"})
        if scene:
            messages.append({"role": "scene", "content": scene})
        for turn in self.turns:
            item = turn.audio.to_json() if turn.audio is not None else {"type": "text", "text": turn.text}
            messages.append({"role": turn.role, "content": [item]})
        return messages


def describe_voice(description: str | None, gender: str | None) -> str | None:
    """A speaker description for the scene from a voice profile (free text wins over gender)."""
    if description and description.strip():
        return description.strip()
    if gender:
        return _GENDER_WORDS.get(gender.strip().lower(), gender.strip())
    return None


def style_sentence(emotion: str | None, speed: float | None) -> str | None:
    """Emotion and speaking rate as a sentence of scene description (the model follows descriptions)."""
    parts = []
    if emotion and emotion != "neutral":
        parts.append(f"The speech sounds {emotion}")
    if speed is not None and abs(speed - 1.0) >= 0.05:
        pace = ("very fast" if speed >= 1.35 else "fast") if speed > 1 else ("very slow" if speed <= 0.7 else "slow")
        parts.append(f"the speaking pace is {pace}" if parts else f"The speaking pace is {pace}")
    return (", and ".join(parts) + ".") if parts else None


def scene_enabled(scene: str | None) -> bool:
    """False for the ways of saying "no scene": None, empty, or `none` (any case)."""
    return bool(scene and scene.strip() and scene.strip().lower() != SCENE_OFF)


def scene_text(scene: str | None, emotion: str | None, speed: float | None) -> str | None:
    """The scene description: the scene (upstream's quiet room by default) and the style sentence, if any."""
    pieces = [p.strip() for p in (scene if scene_enabled(scene) else None, style_sentence(emotion, speed)) if p and p.strip()]
    return "\n".join(pieces) or None


def tag_text(text: str, tag: str, multi: bool) -> str:
    """Chunk text as the model expects it: `[SPEAKERi] text` in multi-speaker jobs."""
    return f"[{tag}] {text}" if multi else text


def _scene_lines(speakers: Sequence[Speaker], multi: bool, ref_in_system: bool) -> tuple[SceneLine, ...]:
    lines = []
    for k, sp in enumerate(speakers):
        ref = sp.reference
        if ref is not None:
            if ref_in_system or ref.transcript is None:
                lines.append(SceneLine(sp.tag, audio=ref.audio))
            continue
        description = sp.description or (_DEFAULT_DESCRIPTIONS[k % 2] if multi else None)
        if description:
            lines.append(SceneLine(sp.tag, description=description))
    return tuple(lines)


def _reference_turns(speakers: Sequence[Speaker], multi: bool, ref_in_system: bool) -> list[Turn]:
    turns: list[Turn] = []
    for sp in speakers:
        ref = sp.reference
        if ref is None or ref_in_system or ref.transcript is None:
            continue
        turns += [Turn("user", text=tag_text(ref.transcript, sp.tag, multi)), Turn("assistant", audio=ref.audio)]
    return turns


def build_prompt(
    speakers: Mapping[str, Speaker],
    speaker: str,
    text: str,
    context: Sequence[ContextChunk] = (),
    *,
    scene: str | None = None,
    ref_in_system: bool = False,
) -> Prompt:
    """The prompt that makes `speaker` say `text`, after the references and the kept context."""
    cast = list(speakers.values())
    multi = len(cast) > 1
    pinned = all(sp.reference is not None for sp in cast)
    system = SYSTEM_MULTI if multi and not pinned else SYSTEM_SINGLE
    turns = _reference_turns(cast, multi, ref_in_system)
    shared = len(turns)
    for chunk in context:
        turns.append(Turn("user", text=tag_text(chunk.text, speakers[chunk.speaker].tag, multi)))
        turns.append(Turn("assistant", audio=AudioRef(chunk=chunk.index)))
    turns.append(Turn("user", text=tag_text(text, speakers[speaker].tag, multi)))
    return Prompt(system, scene, _scene_lines(cast, multi, ref_in_system), tuple(turns), shared)


def fit_context(base: int, costs: Sequence[int], new_tokens: int, limit: int) -> int:
    """How many of the newest context chunks fit: base + their costs + new tokens <= limit (oldest go first)."""
    keep = len(costs)
    while keep and base + sum(costs[len(costs) - keep:]) + new_tokens > limit:
        keep -= 1
    return keep


def audio_positions(frames: int, num_codebooks: int) -> int:
    """Sequence positions an audio item of `frames` code frames takes: stream BOS/EOS plus the delay pattern."""
    return frames + 2 + num_codebooks - 1
