"""Defaults and frozen option objects shared by the CLI and the library (the one place for defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --- audio -------------------------------------------------------------------------------------
SAMPLE_RATE = 24_000  # Higgs Audio v2's native rate; every engine's output is brought to it
FADE_SECONDS = 0.008  # edge fade applied to every chunk so joins never click
SILENCE_DB = -50.0  # level under which chunk edges count as silence when trimming

# --- pauses between pieces (seconds) -----------------------------------------------------------
PAUSE_SENTENCE = 0.25  # between chunks inside one paragraph
PAUSE_PARAGRAPH = 0.7  # between paragraphs of the same speaker
PAUSE_TURN = 0.45  # when the speaker changes
PAUSE_CHAPTER = 2.0  # before a `# Heading` (and between chapters bound into one book)
PAUSE_TAG = 1.0  # a bare [pause] tag; [pause:1.5] gives its own length
PAUSE_TAG_MAX = 600.0

# --- chunking ----------------------------------------------------------------------------------
CHUNK_METHODS = ("speaker", "paragraph", "sentence", "none")
DEFAULT_CHUNK = "paragraph"
DEFAULT_DIALOGUE_CHUNK = "speaker"
DEFAULT_MAX_WORDS = 60  # ~20-25 s of speech: long enough for prosody, short enough to retry

# --- transcripts -------------------------------------------------------------------------------
DEFAULT_SPEAKER = "NARRATOR"  # owner of any text before the first speaker tag
MAX_TRANSCRIPT_BYTES = 64 * 1024 * 1024
LONG_WORD_CHARS = 50  # a "word" longer than this (not a URL) is warned about: likely pasted data, not prose
MAX_WORD_CHARS = 200  # ... and longer than this refused: an engine would hum one sound for minutes

# --- engines and voices ------------------------------------------------------------------------
ENGINE_NAMES = ("auto", "higgs", "piper", "espeak")
CPU_ENGINE = "piper"  # what `auto` uses when the higgs engine cannot run here
DEFAULT_SEED = 0
VOICE_MIN_SECONDS = 3.0
VOICE_MAX_SECONDS = 30.0
BUNDLED_VOICES_DIR = Path(__file__).resolve().parent.parent / "voices"
# Order in which automatic casting hands out bundled voices: alternate genders so that
# neighbouring speakers are as different as possible.
CAST_ORDER = ("joe", "ava", "brock", "nell", "otis", "mae")

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
# A clip-less speaker's voice is fixed by rendering this once (per voice and seed) and pinning it in every chain.
ANCHOR_TEXT = ("I am going to read this to you in my own natural voice, at an easy and steady pace, "
               "so that you can hear clearly how I sound.")
EMOTIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
# Upstream's default scene (boson-ai/higgs-audio examples/scene_prompts/quiet_indoor.txt, the default --scene_prompt of
# examples/generation.py): without it the base model is freer to add background sound. `--scene none` turns it off.
DEFAULT_SCENE = "Audio is recorded from a quiet room."
SCENE_OFF = "none"
# Positions a prompt plus its new audio may take. Ours, not the checkpoint's: the converted config says 2048
# (transformers' default) but its llama3 rope gives the same rotary frequencies as upstream's 131072/8192 settings,
# and upstream's serve engine runs KV caches up to 8192.
DEFAULT_CONTEXT_LIMIT = 8192
# Context is budgeted against the audio a chunk is expected to need, not the whole --max-new-tokens: 10 frames per
# word is 150 words a minute at 25 frames/s; the margin doubles it and adds 2 s for pauses and sound events.
FRAMES_PER_WORD = 10
EXPECTED_FRAMES_MARGIN = 2.0
EXPECTED_FRAMES_EXTRA = 50


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
    scene: str | None = DEFAULT_SCENE  # None, "" or "none": no scene
    ref_in_system: bool = False
    emotion: str | None = None
    speed: float | None = None
    chain_words: int = 0  # > 0: a new chain (context reset) at the first paragraph after this many words; chapters always
    batch: int = 1  # chains generated together as one GPU batch (static-cache decoder); output does not depend on it
    decoder: str = "auto"  # plain (transformers' generate) or fast (static cache, CUDA graphs); auto = plain until
    # the fast loop has been measured on a GPU (it matches generate() exactly on CPU, never yet run on CUDA)
    context_limit: int = DEFAULT_CONTEXT_LIMIT  # positions of prompt + new audio; older context is dropped past it


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
    pause_chapter: float = PAUSE_CHAPTER
    higgs: HiggsSettings = field(default_factory=HiggsSettings)
    music: str | None = None  # a bed under the whole programme (transcript [music: f] tags add cues)
    max_silence: float | None = None  # shorten silences inside generated speech to at most this
    finish: FinishOptions = field(default_factory=lambda: FinishOptions())  # music mix, loudness, metadata
    speech: SpeechOptions = field(default_factory=lambda: SpeechOptions())  # numbers and lexicon: what engines are given
    qa: QaOptions = field(default_factory=lambda: QaOptions())  # the quality gate (qa.py, takes.py)
    descriptions: dict[str, str] = field(default_factory=dict)  # speaker -> description (a project's `speakers:`), read by casting


# --- finishing -----------------------------------------------------------------------------------
# Music bed, ducking, programme loudness and containers (see mixing.py, containers.py, stems.py).
MUSIC_GAIN_DB = -14.0  # level of the bed relative to the music file as decoded
MUSIC_GAIN_RANGE = (-60.0, 12.0)
MUSIC_FADE_SECONDS = 1.5  # fade in/out of the bed, and crossfade when a cue switches music
MUSIC_LOOP_CROSSFADE = 1.0  # crossfade where a short music file loops back to its start
MUSIC_MIN_SECONDS = 1.0
MUSIC_MAX_SECONDS = 1800.0  # longer files are used up to this point (the bed is held in memory)
MUSIC_SILENT_DB = -60.0  # a music file whose peak is below this is rejected as silent
MUSIC_EDGE_MAX_SECONDS = 600.0  # upper bound for --music-intro / --music-outro
DUCK_DB = 12.0  # how far the bed drops under speech
DUCK_MAX_DB = 40.0
DUCK_ATTACK = 0.25  # seconds: the bed starts dropping this long before speech begins
DUCK_RELEASE = 0.8  # seconds: it breathes back up over this long once speech stops
BLOCK_FRAMES = 1 << 16  # ~2.7 s at 24 kHz: the unit of every streaming pass
LIMITER_LOOKAHEAD = 0.005  # seconds of lookahead for the true-peak limiter
LIMITER_HOLD = 0.03  # seconds the limiter holds its gain before releasing
LOUDNESS_TOLERANCE = 0.2  # LU: re-measure and correct when limiting moved the result further
LOUDNESS_RANGE = (-40.0, -5.0)  # accepted numeric --loudness targets (LUFS)
NUMERIC_PEAK_DB = -1.0  # true-peak ceiling used with a numeric --loudness
SAFETY_PEAK_DB = -1.0  # ceiling of the limiter when no loudness target is set
ACX_RMS_TARGET = -20.0  # middle of ACX's -23..-18 dB RMS window
ACX_RMS_RANGE = (-23.0, -18.0)
ACX_NOISE_FLOOR_DB = -60.0
SUBTITLE_MAX_CHARS = 84  # two lines of 42: a common broadcast limit
SUBTITLE_LINE_CHARS = 42
SUBTITLE_MAX_SECONDS = 7.0
AAC_BITRATE = "96k"  # m4a/m4b; audiobooks of speech sound fine at 64-96 kbit/s
CONTAINER_FORMATS = (".m4a", ".m4b")


@dataclass(frozen=True)
class LoudnessPreset:
    """A programme loudness target: integrated LUFS (or ACX RMS) and a true-peak ceiling."""

    name: str
    target: float  # LUFS, or dB RMS when `measure` is "rms"
    peak_db: float  # true-peak ceiling, dBTP
    measure: str = "lufs"  # "lufs" (BS.1770 integrated) or "rms" (ACX)


LOUDNESS_PRESETS = {
    "podcast": LoudnessPreset("podcast", -16.0, -1.0),
    "audiobook": LoudnessPreset("audiobook", ACX_RMS_TARGET, -3.5, "rms"),  # ACX: peaks <= -3 dBFS, 0.5 dB margin
    "broadcast": LoudnessPreset("broadcast", -23.0, -1.0),  # EBU R128
    "speech": LoudnessPreset("speech", -18.0, -1.0),  # the CLI's and book projects' default (see DEFAULT_LOUDNESS)
}
# What `higgs generate/dialogue/clone` and `higgs build` aim for unless told otherwise: -18 LUFS integrated, true
# peaks <= -1 dBTP; the middle of the -16..-20 LUFS that AES TD1004 recommends for streamed speech (raw engine
# output sits near -25 LUFS). `--loudness off` keeps the level as rendered; the limiter still holds -1 dBTP.
DEFAULT_LOUDNESS = "speech"


@dataclass(frozen=True)
class FinishOptions:
    """How the rendered speech is finished: music bed and ducking, loudness, container metadata."""

    music_gain: float = MUSIC_GAIN_DB
    music_fade: float = MUSIC_FADE_SECONDS
    music_intro: float = 0.0  # seconds of music alone before the speech
    music_outro: float = 0.0  # seconds of music alone after the speech
    duck: float = DUCK_DB
    duck_attack: float = DUCK_ATTACK
    duck_release: float = DUCK_RELEASE
    loudness: str | float | None = None  # preset name, LUFS number, or None (peak safety only)
    block: int = BLOCK_FRAMES
    title: str | None = None  # container metadata (m4a/m4b)
    author: str | None = None
    cover: Path | None = None
    bitrate: str = AAC_BITRATE


# --- reading inputs: script formats, text cleaned for speech, lexicon (scripts.py, textclean.py, lexicon.py) -----------
SCRIPT_FORMATS = ("auto", "higgs", "speaker-colon", "inline-s", "jsonl", "name-colon")
EMOJI_MODES = ("remove", "name", "keep")
NUMBER_MODES = ("auto", "words", "keep")
# What `--numbers auto` does per engine: "words" reads English numbers, dates and currencies out before the engine
# sees them; "keep" leaves numerals to an engine that reads them well itself. None of ours does so reliably
# (eSpeak and Piper read years and dates digit by digit or as cardinals), so every engine gets words.
NUMBERS_BY_ENGINE = {"higgs": "words", "piper": "words", "espeak": "words"}
PHONEME_ENGINES = ("piper",)  # engines that take IPA in [[...]] (a lexicon's /phonemes/); eSpeak takes its own `espeak:` mnemonics
WORDS_PER_MINUTE = 155  # estimate of narration pace for `higgs import`'s summary


@dataclass(frozen=True)
class SpeechOptions:
    """What an engine is given for a chunk's text: numbers read out or kept, and a pronunciation lexicon."""

    numbers: str = "auto"  # auto (per engine, NUMBERS_BY_ENGINE), words or keep
    lexicon: Any = None  # a lexicon.Lexicon, or None


# --- quality gate ----------------------------------------------------------------------------------
# Every chunk heard back by Whisper and checked; failing takes re-rendered with the next derived seed (qa.py, takes.py).
QA_MODES = ("off", "report", "retake", "strict")
# Per-engine default of `--qa auto`, from measured costs (README, "Quality gate"): the sampled engine retakes;
# the CPU engines are deterministic per seed and the check costs more than their rendering.
QA_DEFAULT_MODES = {"higgs": "retake", "piper": "off", "espeak": "off"}
QA_RETAKES = 2  # extra takes of a failing chunk before the best one is kept
QA_MAX_RETAKES = 10
QA_WER_MAX = 0.4  # word (or, for CJK, character) error rate above which a chunk fails ...
QA_MIN_ERRORS = 3  # ... provided at least this many words are wrong (Whisper tiny mishears a word or two: "Habit" -> "Have it")
QA_TEXT_MIN_WORDS = 4  # shorter chunks are judged by their text only when nothing at all was heard
QA_NEAR_MISS_CER = 0.34  # none of a short text's words heard, but its letters nearly were ("Blog" heard as "Vlog"): a mishearing
QA_TRUNCATED_MIN = 2  # expected words missing at the end: at least this many ...
QA_TRUNCATED_SHARE = 0.15  # ... and this share of the chunk
QA_INVENTED_MIN = 3  # heard words that are not in the text: at least this many ...
QA_INVENTED_SHARE = 0.25  # ... and this share of the chunk
QA_RATE_WINDOW = (1.2, 5.5)  # words per second of speech; a voice with a clip and transcript uses its own rate x [1/2, 2]
QA_RATE_MIN_WORDS = 5  # shorter chunks skip the rate check (one long word can take a second)
QA_MAX_GAP = 2.0  # seconds of silence inside a chunk's speech
QA_SILENT_DB = -35.0  # a chunk whose peak stays under this is near-silent
QA_CLIP_RUN = 3  # samples in a row at the chunk's peak level make a flat top (clipping) ...
QA_CLIP_SHARE = 0.0005  # ... and a chunk with more than this share of samples in flat tops fails
QA_NOISE_SECONDS = 0.3  # a run of loud, spectrally flat frames this long is a noise burst
QA_NOISE_FLATNESS = 0.5
QA_NOISE_DB = -30.0
QA_VOICE_MIN = 0.75  # speaker-embedding cosine similarity to the voice's clip or anchor (cloning engines)
QA_VOICE_MIN_SECONDS = 1.5  # shorter chunks skip the voice check


@dataclass(frozen=True)
class QaOptions:
    """The quality gate: mode (auto = the engine's default), retakes per failing chunk, recogniser."""

    mode: str = "auto"
    retakes: int = QA_RETAKES
    model: str | None = None  # Whisper hub id or local CTranslate2 dir; None = bundled tiny.en


# --- Ray (an optional extra: higgs-cli[ray]) ---------------------------------------------------------
RAY_ADDRESSES = ("local", "auto")  # or HOST:PORT of a running cluster's head (ray://HOST:PORT for Ray Client)
RAY_CACHE_MODES = ("auto", "driver", "shared")
RAY_RETRIES = 3  # restarts of a dead worker, and re-runs of the chunk (or chain) it had in flight
RAY_QUEUE = 2  # single-chunk calls queued on each worker, so it never idles waiting for the driver
RAY_CONNECT_TIMEOUT = 5.0  # seconds to reach a cluster's head before saying it is unreachable


@dataclass(frozen=True)
class RaySettings:
    """Where and how chunks render on Ray (`--ray ADDRESS`, or `ray:` in a project file)."""

    address: str = "local"  # local: start Ray on this machine; auto: the running cluster; or HOST:PORT
    workers: int | None = None  # default: one per GPU (higgs on CUDA), else one per `cpus` CPUs; never more than are free
    cpus: float = 1.0  # CPUs each worker reserves (CPU engines, and higgs with device cpu)
    cache: str = "auto"  # driver: chunks travel back to this machine; shared: workers write the cache dir every node
    # mounts at the same path; auto: shared for the workers that can see the driver's cache dir, driver for the rest
    retries: int = RAY_RETRIES


# --- the speech server (`higgs serve`) -------------------------------------------------------------
SERVE_HOST = "127.0.0.1"
SERVE_PORT = 8000
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
SERVE_MAX_INPUT_CHARS = 4096  # OpenAI's own limit for /v1/audio/speech
SERVE_MAX_BODY_BYTES = 16 << 20  # a 30 s reference clip as base64 (about 2 MB as wav) fits with room to spare
SERVE_TIMEOUT = 300.0  # seconds a request may take from admission to its last byte
SERVE_WAITING = 16  # requests that may wait for a place before the server answers 429
SERVE_SPEED_RANGE = (0.5, 2.0)  # what the engines can do (OpenAI's API allows 0.25-4)
SERVE_MAX_PAUSE_SECONDS = 60.0  # [pause] tags per request, in all: 6 x [pause:600] in 80 characters would be an hour of audio
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")  # accepted as `model` so stock clients work unchanged


@dataclass(frozen=True)
class ServeOptions:
    """How `higgs serve` runs: where it listens, who may call it, its limits, and the engine behind it."""

    engine: str = "auto"
    host: str = SERVE_HOST
    port: int = SERVE_PORT
    api_key: str | None = None
    insecure_public: bool = False
    workers: int = 2  # CPU engines: warm engines rendering chunks side by side
    max_concurrent: int = 4  # requests rendering at once (the rest wait)
    max_waiting: int = SERVE_WAITING
    max_input_chars: int = SERVE_MAX_INPUT_CHARS
    max_body_bytes: int = SERVE_MAX_BODY_BYTES
    timeout: float = SERVE_TIMEOUT
    cache_dir: Path | None = None  # None: the default chunk cache
    no_cache: bool = False  # each request renders into a temporary store, removed afterwards
    higgs: HiggsSettings = field(default_factory=HiggsSettings)
    qa: QaOptions = field(default_factory=QaOptions)  # the quality gate over every request (server_qa.py)
