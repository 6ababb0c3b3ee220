"""The quality gate's checks: one rendered chunk -> a Verdict (passed, error rate, what was heard, reasons).

Checks, each adding a reason that starts with its name: `text` (word error rate, or character error rate
for CJK, against the words the engine was given, or none of them heard), `truncated` (expected words
missing at the end, or speech that stops abruptly), `invented` (heard words that are not in the text), `rate` (speaking rate outside the voice's window),
`silent`, `clipping` (flat tops), `gap` (a long silence inside the speech), `noise` (a burst of loud broadband noise)
and, for engines that clone or sample a voice, `voice` (speaker-embedding similarity to the voice's clip
or anchor). A chunk passes when no check gives a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import options as o
from .asr import Recognizer, align, is_cjk, tokens

_FRAME = 0.02  # seconds per analysis frame
_SUNG = re.compile(r"<SE_[se]>\[(?:Humming|Singing|Music)\]")  # sung or hummed passages are not read text
# Measured on 100 clean Piper chunks of bench/long_text.txt (BENCHMARKS.md, "Quality gate"): the last 20 ms of a
# chunk's trimmed speech sat 37 dB or more under its loud (95th percentile) frames; a render cut mid-word ends near them.
_ABRUPT_DB = -30.0
# The 4-10 kHz band of loud frames is spectrally flat for at most 0.14 s in a row in those chunks (a long "s");
# white noise mixed over speech keeps that band flat for as long as it lasts, even where speech dominates below.
_HF_BAND = (4000.0, 10000.0)
_HF_FLATNESS = 0.4
_HF_SECONDS = 0.2
_SHORT_TRUNCATED_SPEEDUP = 1.5  # a short chunk missing its last word(s) and spoken this much faster than the voice: cut off


@dataclass
class Verdict:
    """What the gate found in one take of one chunk."""

    passed: bool
    wer: float | None
    asr: str | None
    reasons: list[str] = field(default_factory=list)
    metric: str = "wer"  # "cer" for CJK text
    similarity: float | None = None

    def doc(self) -> dict[str, Any]:
        out: dict[str, Any] = {"passed": self.passed, self.metric: self.wer, "asr": self.asr, "reasons": list(self.reasons)}
        if self.metric != "wer":
            out["wer"] = self.wer  # the field every reader looks for; `metric` says what it measured
            out["metric"] = self.metric
        if self.similarity is not None:
            out["voice_similarity"] = self.similarity
        return out

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Verdict:
        return cls(bool(doc["passed"]), doc.get("wer"), doc.get("asr"), list(doc.get("reasons") or []),
                   doc.get("metric", "wer"), doc.get("voice_similarity"))

    def score(self) -> tuple[int, int, float]:
        """Lower is better: passed first, then fewer reasons, then fewer errors."""
        return (0 if self.passed else 1, len(self.reasons), self.wer if self.wer is not None else 1.0)


# --- text --------------------------------------------------------------------------------------------
def text_reasons(expected_text: str, heard: str, seconds: float | None = None,
                 window: tuple[float, float] = o.QA_RATE_WINDOW) -> tuple[float | None, list[str], str]:
    """(error rate, reasons, metric) for what was heard against what the engine was given. `seconds` (of trimmed
    speech) and the voice's rate `window` let a short chunk that lost its last words be told from a mishearing."""
    expected = tokens(expected_text)
    got = tokens(heard, expected)
    metric = "cer" if is_cjk(expected_text) else "wer"
    unit = "characters" if metric == "cer" else "words"
    if not expected:
        return None, [], metric
    a = align(expected, got)
    rate, reasons = round(a.rate, 3), []
    if not got:
        return rate, [f"text: nothing was heard ({len(expected)} {unit} expected)"], metric
    short = metric == "wer" and len(expected) < o.QA_TEXT_MIN_WORDS
    if a.hits == 0 and not _near_miss(expected, got):  # another text, whatever the length ("It is." heard as "I did it.")
        reasons.append(f"text: none of the {len(expected)} expected {unit} was heard")
    elif not short and a.rate > o.QA_WER_MAX and a.errors >= o.QA_MIN_ERRORS:
        reasons.append(f"text: {metric.upper()} {a.rate:.2f} ({a.errors} of {len(expected)} {unit} wrong)")
    lost = a.trailing_deletions
    if lost >= o.QA_TRUNCATED_MIN and lost >= o.QA_TRUNCATED_SHARE * len(expected):
        reasons.append(f"truncated: the last {lost} of {len(expected)} {unit} are missing")
    elif short and lost and a.hits and seconds:
        fast = len(expected) / seconds
        centre = (window[0] * window[1]) ** 0.5
        if fast > _SHORT_TRUNCATED_SPEEDUP * centre:
            reasons.append(f"truncated: the last {lost} of {len(expected)} {unit} are missing and {seconds:.1f} s is short for them")
    extra = a.invented
    if extra >= o.QA_INVENTED_MIN and extra >= o.QA_INVENTED_SHARE * len(expected):
        reasons.append(f"invented: {extra} {unit} heard that are not in the text")
    return rate, reasons, metric


def _near_miss(expected: list[str], heard: list[str]) -> bool:
    """No word heard as written, yet the letters almost match: a recogniser's slip on a short text, not other words."""
    want, got = list("".join(expected)), list("".join(heard))
    return bool(want) and align(want, got).errors / len(want) <= o.QA_NEAR_MISS_CER


def rate_reasons(words: int, seconds: float, window: tuple[float, float]) -> list[str]:
    """Speaking rate in words per second of (trimmed) speech against the voice's window."""
    if words < o.QA_RATE_MIN_WORDS or seconds <= 0:
        return []
    rate = words / seconds
    if rate < window[0]:
        return [f"rate: {rate:.1f} words/s is slower than {window[0]:.1f} ({seconds:.1f} s for {words} words)"]
    if rate > window[1]:
        return [f"rate: {rate:.1f} words/s is faster than {window[1]:.1f} ({seconds:.1f} s for {words} words)"]
    return []


def voice_rate_window(clip_seconds: float | None, clip_words: int) -> tuple[float, float]:
    """A voice with a clip and its transcript speaks at about the clip's rate: half to double it; else the default."""
    if not clip_seconds or clip_words < o.QA_RATE_MIN_WORDS:
        return o.QA_RATE_WINDOW
    rate = clip_words / clip_seconds
    return (round(rate / 2, 2), round(rate * 2, 2))


# --- signal ------------------------------------------------------------------------------------------
def _frames(audio: np.ndarray, rate: int) -> np.ndarray:
    win = max(1, round(rate * _FRAME))
    n = len(audio) // win
    return audio[: n * win].reshape(n, win) if n else np.zeros((0, win), np.float32)


def _db(x: np.ndarray | float) -> Any:
    return 20 * np.log10(np.maximum(x, 1e-9))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of every run of True."""
    if not mask.any():
        return []
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), (ends - starts).tolist()))


def signal_reasons(audio: np.ndarray, rate: int) -> list[str]:
    """Near-silence, clipping, long silences inside the speech, and bursts of broadband noise."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0 or _db(peak) < o.QA_SILENT_DB:
        return [f"silent: peak {float(_db(peak)):.0f} dBFS (under {o.QA_SILENT_DB:.0f})"]
    reasons = []
    clipped = clipped_share(audio, peak)
    if clipped > o.QA_CLIP_SHARE:
        reasons.append(f"clipping: {clipped:.2%} of samples flattened at the peak")
    frames = _frames(audio, rate)
    level = _db(np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)))
    loud = np.flatnonzero(level > o.SILENCE_DB)
    if loud.size:
        quiet = level[loud[0]: loud[-1] + 1] <= o.SILENCE_DB
        gaps = [(s, n) for s, n in _runs(quiet) if n * _FRAME > o.QA_MAX_GAP]
        if gaps:
            start, n = max(gaps, key=lambda g: g[1])
            reasons.append(f"gap: {n * _FRAME:.1f} s of silence inside the speech at {(loud[0] + start) * _FRAME:.1f} s")
    if loud.size:
        tail = audio[-max(1, round(rate * _FRAME)):]
        end = float(_db(np.sqrt(np.mean(tail.astype(np.float64) ** 2)))) - float(np.percentile(level[loud], 95))
        if end > _ABRUPT_DB:
            reasons.append(f"truncated: the speech stops abruptly (its last {_FRAME * 1000:.0f} ms {-end:.0f} dB under its loud frames)")
    burst = _noise_burst(frames, level, rate)
    if burst:
        reasons.append(f"noise: {burst[1]:.1f} s of broadband noise at {burst[0]:.1f} s")
    return reasons


def clipped_share(audio: np.ndarray, peak: float) -> float:
    """Share of samples in flat tops: runs of QA_CLIP_RUN or more samples at the peak level. Overs above full
    scale in float audio are no clipping (the finishing limiter brings them down); a waveform cut off at a
    rail, by an int16 stage or a saturating model, is."""
    at_peak = np.abs(audio) >= peak * (1 - 1e-4)
    flat = sum(n for _, n in _runs(at_peak) if n >= o.QA_CLIP_RUN)
    return flat / len(audio)


def _flatness(spectrum: np.ndarray) -> np.ndarray:
    return np.exp(np.mean(np.log(spectrum), axis=1)) / np.mean(spectrum, axis=1)


def _noise_burst(frames: np.ndarray, level: np.ndarray, rate: int) -> tuple[float, float] | None:
    """The longest run of loud frames whose spectrum is flat like noise (speech is never flat for long), over the
    whole band or over its 4-10 kHz part (where noise mixed into speech still shows)."""
    if not len(frames):
        return None
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(frames.shape[1]), axis=1)) ** 2 + 1e-12
    freqs = np.fft.rfftfreq(frames.shape[1], 1 / rate)
    loud = level > o.QA_NOISE_DB
    runs = [(s, n) for s, n in _runs((_flatness(spectrum[:, 1:]) > o.QA_NOISE_FLATNESS) & loud) if n * _FRAME >= o.QA_NOISE_SECONDS]
    band = (freqs >= _HF_BAND[0]) & (freqs <= min(_HF_BAND[1], rate / 2))
    if band.sum() >= 4:
        runs += [(s, n) for s, n in _runs((_flatness(spectrum[:, band]) > _HF_FLATNESS) & loud) if n * _FRAME >= _HF_SECONDS]
    long = runs
    if not long:
        return None
    start, n = max(long, key=lambda r: r[1])
    return start * _FRAME, n * _FRAME


# --- voice -------------------------------------------------------------------------------------------
class VoiceMatcher:
    """Speaker-embedding similarity (embedding.py: a GE2E encoder, offline, on the CPU); references embedded once."""

    def __init__(self) -> None:
        self._refs: dict[str, np.ndarray] = {}

    @staticmethod
    def _embed(audio: np.ndarray, rate: int) -> np.ndarray:
        from .audio import resample
        from .embedding import RATE, embed

        return embed(resample(audio, rate, RATE))

    def similarity(self, audio: np.ndarray, rate: int, ref_name: str, reference: np.ndarray, ref_rate: int) -> float:
        if ref_name not in self._refs:
            self._refs[ref_name] = self._embed(reference, ref_rate)
        return round(float(np.dot(self._embed(audio, rate), self._refs[ref_name])), 3)


# --- the whole check ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expected:
    """What a chunk should be: its spoken text, language, the voice's rate window and (cloning engines) reference."""

    text: str
    language: str = "en"
    window: tuple[float, float] = o.QA_RATE_WINDOW
    voice: str | None = None  # name of the reference, for its cached embedding
    reference: np.ndarray | None = None
    reference_rate: int = o.SAMPLE_RATE


class Checker:
    """Runs every check on a chunk; holds the recogniser and the voice matcher (each loaded on first use)."""

    def __init__(self, model: str | None = None, device: str = "cpu"):
        self.model, self.device = model, device
        self._asr: Recognizer | None = None
        self.voices = VoiceMatcher()

    @property
    def asr(self) -> Recognizer:
        if self._asr is None:
            self._asr = Recognizer(self.model, self.device)
        return self._asr

    def check(self, audio: np.ndarray, rate: int, expected: Expected) -> Verdict:
        from .audio import trim_silence

        speech = trim_silence(np.asarray(audio, dtype=np.float32), rate)
        reasons = signal_reasons(speech, rate)
        if reasons and reasons[0].startswith("silent"):
            return Verdict(False, 1.0, "", reasons)
        heard = self.asr.transcribe(speech, rate, expected.language)
        wer, metric = None, "wer"
        if not _SUNG.search(expected.text):  # sung or hummed passages: Whisper cannot be held to the words
            wer, text, metric = text_reasons(expected.text, heard, len(speech) / rate, expected.window)
            reasons = text + reasons
            reasons += rate_reasons(len(tokens(expected.text)), len(speech) / rate, expected.window) if metric == "wer" else []
        similarity = None
        if expected.reference is not None and len(speech) / rate >= o.QA_VOICE_MIN_SECONDS:
            similarity = self.voices.similarity(speech, rate, expected.voice or "", expected.reference, expected.reference_rate)
            if similarity < o.QA_VOICE_MIN:
                reasons.append(f"voice: similarity {similarity:.2f} to the voice's reference (under {o.QA_VOICE_MIN:.2f})")
        return Verdict(not reasons, wer, heard, reasons, metric, similarity)
