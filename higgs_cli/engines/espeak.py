"""The formant CPU engine: eSpeak NG through its C library (from the `espeakng-loader` package).

Fast, tiny and multilingual, with many voice variants (`en-us+f3`, `en+m1`, ...), but robotic.
Voice profile settings (`engines: espeak:`): `voice` (an eSpeak voice name with optional
`+variant`), `rate` (words per minute), `pitch` and `range` (0-100).
"""

from __future__ import annotations

import ctypes
import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import resample
from ..errors import RenderError
from ..options import SAMPLE_RATE
from ..transcript import plain_text
from . import ChunkAudio, ChunkRequest, Engine

_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS: samples come back through the callback
_CHARS_UTF8, _PHONEMES, _END_PAUSE = 1, 0x100, 0x1000  # _PHONEMES: [[...]] in the text is eSpeak phoneme mnemonics
_RATE, _PITCH, _RANGE = 1, 3, 4
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_lib_lock = threading.Lock()  # libespeak-ng is one global synthesiser per process


class EspeakEngine(Engine):
    name = "espeak"
    summary = "formant CPU voices (eSpeak NG), many languages and variants, robotic"
    reproducible = False  # measured: repeated renders differ by a few samples
    parallel = True
    process_global = True  # espeak_Initialize and the synth callback are the library's, not the instance's

    @classmethod
    def identity(cls, settings: Any) -> dict[str, Any]:
        from importlib.metadata import version

        return {"engine": cls.name, "espeakng-loader": version("espeakng-loader")}

    def __init__(self, settings: Any = None):
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_parent = str(Path(espeakng_loader.get_data_path()).parent).encode()
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._native = self._lib.espeak_Initialize(_SYNCHRONOUS, 0, data_parent, 0)
        if self._native <= 0:
            raise RenderError("eSpeak NG failed to initialise; reinstall espeakng-loader (`make install`)")
        self._pieces: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: C holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)
        self.sample_rate = SAMPLE_RATE

    @classmethod
    def check(cls) -> str | None:
        if importlib.util.find_spec("espeakng_loader") is None:
            return "Python package espeakng-loader is not installed (run `make install`)"
        return None

    def _collect(self, wav: Any, count: int, events: Any) -> int:
        # Exceptions cannot cross the C callback: remember Ctrl-C and ask eSpeak to stop (return 1).
        try:
            if count > 0:
                self._pieces.append(np.ctypeslib.as_array(wav, shape=(count,)).astype(np.float32) / 32768.0)
            return 0
        except KeyboardInterrupt:
            self._interrupted = True
            return 1

    @classmethod
    def voice_problem(cls, settings: dict[str, Any]) -> str | None:
        from . import range_problems

        if "voice" in settings and not (isinstance(settings["voice"], str) and settings["voice"].strip()):
            return f"voice: {settings['voice']!r:.30} must be an eSpeak voice name such as en-us+f3"
        return range_problems(settings, {"rate": (80, 450), "pitch": (0, 100), "range": (0, 100)})

    def synthesize(self, request: ChunkRequest) -> ChunkAudio:
        opts = request.voice.settings(self.name)
        voice = str(opts.get("voice", "en-us"))
        text = plain_text(request.text)
        if not text:
            return ChunkAudio(np.zeros(0, np.float32), {"voice": voice})
        with _lib_lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise RenderError(f"eSpeak NG has no voice {voice!r}; fix `engines: espeak: voice:` in the voice profile")
            for param, key, default in ((_RATE, "rate", 165), (_PITCH, "pitch", 50), (_RANGE, "range", 50)):
                self._lib.espeak_SetParameter(param, int(opts.get(key, default)), 0)
            self._pieces, self._interrupted = [], False
            data = text.encode("utf-8") + b"\0"
            err = self._lib.espeak_Synth(data, len(data), 0, 0, 0, _CHARS_UTF8 | _PHONEMES | _END_PAUSE, None, None)
            self._lib.espeak_Synchronize()
            pieces, self._pieces = self._pieces, []
        if self._interrupted:
            raise KeyboardInterrupt
        if err != 0:
            raise RenderError(f"eSpeak NG failed on chunk {request.index} (error {err})")
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        return ChunkAudio(resample(audio, self._native, self.sample_rate), {"voice": voice})
