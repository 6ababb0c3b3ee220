"""The Higgs Audio v2 engine (transformers' native classes): availability check only, for now."""

from __future__ import annotations

import importlib.util
from typing import Any

from . import ChunkAudio, ChunkRequest, Engine


class HiggsEngine(Engine):
    name = "higgs"
    summary = "Boson AI Higgs Audio v2 (transformers), voice cloning; needs a CUDA GPU and the weights"
    clones = True

    def __init__(self, settings: Any = None):
        from ..errors import EngineUnavailable

        raise EngineUnavailable("the higgs engine is not built yet")

    @classmethod
    def check(cls) -> str | None:
        for module in ("torch", "transformers"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (run `make install`)"
        return "model weights are not available here (no GPU and no downloaded checkpoint)"

    def synthesize(self, request: ChunkRequest) -> ChunkAudio:
        raise NotImplementedError
