"""Defaults and frozen option objects shared by the CLI and the library (the one place for defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# --- audio -------------------------------------------------------------------------------------
SAMPLE_RATE = 24_000  # Higgs Audio v2's native rate; every engine's output is brought to it
FADE_SECONDS = 0.008  # edge fade applied to every chunk so joins never click
SILENCE_DB = -50.0  # level under which chunk edges count as silence when trimming

# --- pauses between pieces (seconds) -----------------------------------------------------------
PAUSE_SENTENCE = 0.25  # between chunks inside one paragraph
PAUSE_PARAGRAPH = 0.7  # between paragraphs of the same speaker
PAUSE_TURN = 0.45  # when the speaker changes

# --- chunking ----------------------------------------------------------------------------------
CHUNK_METHODS = ("speaker", "paragraph", "sentence", "none")
DEFAULT_CHUNK = "sentence"
DEFAULT_DIALOGUE_CHUNK = "speaker"
DEFAULT_MAX_WORDS = 60  # ~20-25 s of speech: long enough for prosody, short enough to retry

# --- transcripts -------------------------------------------------------------------------------
DEFAULT_SPEAKER = "NARRATOR"  # owner of any text before the first speaker tag
MAX_TRANSCRIPT_BYTES = 64 * 1024 * 1024

# --- engines and voices ------------------------------------------------------------------------
ENGINE_NAMES = ("auto", "higgs", "piper", "espeak")
CPU_ENGINE = "piper"  # what `auto` uses when the higgs engine cannot run here
DEFAULT_SEED = 0
VOICE_MIN_SECONDS = 3.0
VOICE_MAX_SECONDS = 30.0
BUNDLED_VOICES_DIR = Path(__file__).resolve().parent.parent / "voices"
# Order in which automatic casting hands out bundled voices: alternate genders so that
# neighbouring speakers are as different as possible.
CAST_ORDER = ("joe", "ava", "brock", "nell", "otis")

OUTPUT_FORMATS = {  # extension -> (soundfile format, subtype)
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".opus": ("OGG", "OPUS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}


# --- the higgs engine -----------------------------------------------------------------------------
DEFAULT_MODEL = "bosonai/higgs-audio-v2-generation-3B-base"
DEFAULT_CODEC = "bosonai/higgs-audio-v2-tokenizer"
EMOTIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")


@dataclass(frozen=True)
class HiggsSettings:
    """Model location and sampling for the higgs engine (validated by the engine)."""

    model: str = DEFAULT_MODEL  # hub id or local directory
    codec: str = DEFAULT_CODEC
    revision: str | None = None
    codec_revision: str | None = None
    device: str = "auto"  # auto -> cuda when available, else cpu (with a warning)
    dtype: str = "auto"  # auto -> bfloat16 on cuda (float16 fallback), float32 on cpu
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 0.95
    ras_window: int = 7  # repetition-aware sampling window; 0 disables (music, humming)
    ras_max_repeat: int = 2
    max_new_tokens: int = 2048  # audio frames per chunk (25 per second)
    context_chunks: int = 2  # earlier generated chunks kept as audio context
    scene: str | None = None
    ref_in_system: bool = False
    emotion: str | None = None
    speed: float | None = None


@dataclass(frozen=True)
class RenderOptions:
    """Everything that decides how one job is planned and rendered."""

    engine: str = "auto"
    chunk: str = DEFAULT_CHUNK
    max_words: int = DEFAULT_MAX_WORDS
    seed: int = DEFAULT_SEED
    voices: dict[str, str] = field(default_factory=dict)  # speaker -> voice name or path
    default_voice: str | None = None  # voice for every speaker not in `voices`
    distinct: bool = True  # give unmapped speakers distinct automatic voices
    pause_sentence: float = PAUSE_SENTENCE
    pause_paragraph: float = PAUSE_PARAGRAPH
    pause_turn: float = PAUSE_TURN
    higgs: HiggsSettings = field(default_factory=HiggsSettings)
