"""The Higgs Audio v2 engine: per-job voice state, prompts with rolling audio-code context, seeded sampling, seam-free decoding.

Each chunk is generated from a prompt holding the speakers' references (clips, or for a clip-less
speaker its anchor: ANCHOR_TEXT rendered once per voice and seed, pinned as its voice lock) and the
last `context_chunks` generated chunks of its chain as audio codes (never re-encoded waveforms).
A job's chunks fall into chains (chapters, or sections of `chain_words`; chunking.chains) whose
context never crosses, so chains can be generated side by side as one batch (`batch` > 1, via
fastgen.stream) with exactly the frames a one-by-one run gives. Every chunk is decoded with the
previous chunk's last `LEFT_CONTEXT_FRAMES` code frames of its chain as left context, and that
overlap is cut, so the codec starts each chunk from the state it would have had in one long decode.
Prompt state lives in higgs_state, the context budget in higgs_budget, code framing in higgs_codes;
torch never leaves the engine's modules.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RenderError, UsageError
from ..options import DEFAULT_CODEC, DEFAULT_CONTEXT_LIMIT, DEFAULT_MODEL, EMOTIONS, HiggsSettings
from ..prompt import AUDIO_TOKEN, AudioRef, ContextChunk, Prompt, audio_positions, scene_text
from ..voices import Voice
from . import ChunkAudio, ChunkRequest, Engine
from .higgs_budget import MIN_NEW_FRAMES, TrimReport, expected_frames, fit_chunk
from .higgs_codes import LEFT_CONTEXT_FRAMES, decode_joined, extract_codes, with_stream_markers
from .higgs_state import JobState, anchor_seed, anchors, chain_state, job_chains

__all__ = ["HiggsEngine", "JobState", "LEFT_CONTEXT_FRAMES", "anchor_seed", "anchors", "chain_state", "decode_joined",
           "extract_codes", "sampling_config", "validate_settings", "with_stream_markers"]

log = logging.getLogger(__name__)

PREVIEW_CHUNKS = 3
DECODERS = ("auto", "plain", "fast")
MAX_BATCH = 256
FAST_CACHE_STEP = 1024  # the fast decoder's static cache grows in steps of this many positions
CONTEXT_LIMIT_RANGE = (1024, 131072)  # 131072: the positions upstream's Llama-3.2 rope settings were made for


# --- settings (torch-free, so the CLI can validate before anything loads) -----------------------
def validate_settings(settings: HiggsSettings) -> None:
    """Raise UsageError naming the option to fix when a sampling or context setting is out of range."""
    s = settings
    checks = [
        (0.0 <= s.temperature <= 1.5, f"--temperature {s.temperature} is out of range; use 0 (greedy) to 1.5"),
        (-1 <= s.top_k <= 100, f"--top-k {s.top_k} is out of range; use -1 (off) to 100"),
        (0.1 <= s.top_p <= 1.0, f"--top-p {s.top_p} is out of range; use 0.1 to 1.0"),
        (s.ras_window >= 0, f"--ras-window {s.ras_window} is negative; use 0 to disable or a window like 7"),
        (s.ras_max_repeat >= 1, f"--ras-max-repeat {s.ras_max_repeat} must be at least 1"),
        (s.max_new_tokens >= 8, f"--max-new-tokens {s.max_new_tokens} is too small; use at least 8 (25 per second)"),
        (s.context_chunks >= 0, f"--context-chunks {s.context_chunks} is negative; use 0 to disable context"),
        (s.emotion is None or s.emotion in EMOTIONS, f"--emotion {s.emotion!r} is unknown; use one of: {', '.join(EMOTIONS)}"),
        (s.speed is None or 0.5 <= s.speed <= 2.0, f"--speed {s.speed} is out of range; use 0.5 to 2.0"),
        (s.decoder in DECODERS, f"--decoder {s.decoder!r} is unknown; use one of: {', '.join(DECODERS)}"),
        (1 <= s.batch <= MAX_BATCH, f"--batch {s.batch} is out of range; use 1 to {MAX_BATCH}"),
        (s.batch == 1 or s.decoder != "plain", "--batch above 1 needs the static-cache decoder; drop --decoder plain"),
        (s.chain_words >= 0, f"--chain-words {s.chain_words} is negative; use 0 for chapters only"),
        (CONTEXT_LIMIT_RANGE[0] <= s.context_limit <= CONTEXT_LIMIT_RANGE[1],
         f"--context-limit {s.context_limit} is out of range; use {CONTEXT_LIMIT_RANGE[0]} to {CONTEXT_LIMIT_RANGE[1]} positions (default 8192)"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


def sampling_config(base: Any, settings: HiggsSettings, max_new_tokens: int) -> Any:
    """A copy of the model's GenerationConfig with the job's sampling settings (temperature 0 = greedy)."""
    gc = copy.deepcopy(base)
    gc.max_new_tokens = max_new_tokens
    gc.do_sample = settings.temperature > 0
    gc.temperature = settings.temperature if gc.do_sample else None
    # "off" is spelled 0 / 1.0 while sampling: generate() fills None from the checkpoint or its defaults (top_k 50)
    gc.top_k = (settings.top_k if settings.top_k > 0 else 0) if gc.do_sample else None
    gc.top_p = min(settings.top_p, 1.0) if gc.do_sample else None
    # RAS off must be spelled as a window that can never fire: generate() treats None as unset and falls back to
    # the checkpoint's generation_config (ras_win_len 7), and 0 would make the window the whole sequence.
    gc.ras_win_len = settings.ras_window or 1
    gc.ras_win_max_num_repeat = settings.ras_max_repeat if settings.ras_window else 2
    return gc


# --- the engine ----------------------------------------------------------------------------------
class _Chain:
    """One chain's rolling state: its prompt state, the codes its prompts still use, the codec's left context."""

    def __init__(self, state: JobState):
        self.state = state
        self.codes: dict[int, Any] = {}
        self.tail: Any | None = None

    def remember(self, request: ChunkRequest, codes: Any) -> None:
        import torch

        self.codes[request.index] = codes
        self.state.record(request.index, request.speaker, request.text)
        joined = codes if self.tail is None else torch.cat([self.tail, codes], dim=1)
        self.tail = joined[:, -LEFT_CONTEXT_FRAMES:]
        self._forget_unused()

    def _forget_unused(self) -> None:
        """Keep only the codes a later prompt can still use (context window and voice locks)."""
        state, n = self.state, max(self.state.settings.context_chunks, 0)
        keep = {c.index for c in state.history[-n:]} if n else set()
        keep |= {c.index for c in state.locks.values()}
        for index in [i for i in self.codes if i not in keep]:
            del self.codes[index]


class _Job:
    """One plan's part of the engine state: its cast, which chain each chunk is in, its anchors' codes."""

    def __init__(self, cast: Mapping[str, Voice], chains: list[list[int]], settings: HiggsSettings | None = None,
                 limit: int = DEFAULT_CONTEXT_LIMIT):
        self.cast = dict(cast)
        self.settings = settings  # the job's own prompt settings (scene, speed...); None: the engine's
        self.chain_of = {i: n for n, chain in enumerate(chains) for i in chain}
        self.anchors: dict[str, tuple[ChunkRequest, Any]] = {}
        self.report = TrimReport(limit)


class HiggsEngine(Engine):
    """Renders chunks with Higgs Audio v2; keeps per-job anchors and per-chain context as audio codes."""

    name = "higgs"
    native_modules = ("torch", "transformers")
    summary = "Boson AI Higgs Audio v2 (transformers), voice cloning; needs a CUDA GPU and the weights"
    clones = True
    conditions_on_cast = True  # every prompt describes every speaker of the job
    batches = True  # render_batch() generates chains side by side

    @classmethod
    def identity(cls, settings: HiggsSettings) -> dict[str, Any]:
        """Model, codec, revisions and every sampling/prompt setting: all of them shape the audio."""
        from dataclasses import asdict

        from .. import model as weights

        doc = asdict(settings)
        doc.pop("device", None)  # the same codes on any device, up to float rounding
        doc.pop("decoder", None)  # same seeds, same distribution: plain and fast differ at most where RAS fires
        doc.pop("batch", None)  # chains give the same frames however many run together
        doc["model"] = weights.model_spec(settings.model, DEFAULT_MODEL, "HIGGS_MODEL")
        doc["codec"] = weights.model_spec(settings.codec, DEFAULT_CODEC, "HIGGS_CODEC")
        return {"engine": cls.name, "left_context_frames": LEFT_CONTEXT_FRAMES, **doc}

    @classmethod
    def anchors(cls, plan: Any) -> list[ChunkRequest]:
        return anchors(plan)

    @classmethod
    def context_of(cls, plan: Any, index: int) -> list[int]:
        """Chunks whose codes reach chunk `index`: its context window, the anchors, and the chain's previous
        chunk (its last frames are the decoder's left context). An anchor has none."""
        if index < 0:
            return []
        state = chain_state(plan, index)
        needed = {c.index for c in state.context()} | {c.index for c in state.locks.values()}
        chain = next(c for c in job_chains(plan) if index in c)
        if chain[0] != index:
            needed.add(plan.chunks[chain[chain.index(index) - 1]].index)
        return sorted(needed)

    def __init__(self, settings: HiggsSettings | None = None):
        from .. import model as weights

        self.settings = settings or HiggsSettings()
        validate_settings(self.settings)
        self._m = weights.load(self.settings)
        if self._m.codec.config.num_quantizers != self._m.num_codebooks:
            raise RenderError(f"codec has {self._m.codec.config.num_quantizers} codebooks but the model expects "
                              f"{self._m.num_codebooks}; pass the matching --codec")
        # generate() warns once a sequence passes max_position_embeddings; the converted config's 2048 is not a limit
        # of the model (higgs_budget), so the job's own limit takes its place (a monotone change to the shared config)
        config = self._m.model.config
        config.max_position_embeddings = max(config.max_position_embeddings, self.settings.context_limit)
        self.sample_rate = self._m.sample_rate
        # On a GPU the static-cache decoder prefills the system prompt and references once per job. Off it, every
        # prompt is prefilled whole, so the fast path stays frame-exact with transformers' generate (tests rely on it).
        self._share_prefix = self._m.device.type == "cuda"
        self._clips: dict[str, Any] = {}
        self._begin({}, [])
        self._fast: Any | None = None  # the static-cache decoder, built on first use and kept for the job's chunks

    @property
    def loaded(self) -> Any:
        """The loaded model, processor and codec (model.Loaded), for `higgs model check`."""
        return self._m

    def decode_codes(self, codes: np.ndarray) -> np.ndarray:
        """(K, T) codes -> float32 mono audio, decoded on their own (no left context)."""
        import torch

        return self._decode(torch.from_numpy(np.asarray(codes, dtype=np.int64)), None)

    def _begin(self, cast: Mapping[str, Voice], chains: list[list[int]]) -> None:
        self._say_trimmed()
        self._jobs = [_Job(cast, chains, limit=self.settings.context_limit)]
        self._chains: dict[tuple[int, int], _Chain] = {}
        self._ended: set[int] = set()

    # availability -------------------------------------------------------------------------------
    @classmethod
    def check(cls) -> str | None:
        """None only with torch + transformers, the default weights cached locally, and a CUDA GPU."""
        return cls._check(HiggsSettings(), need_gpu=True)

    @classmethod
    def check_settings(cls, settings: HiggsSettings) -> str | None:
        """Like check() for an explicit `--engine higgs`: a local model and --device cpu are fine."""
        return cls._check(settings, need_gpu=settings.device.startswith("cuda"))

    @classmethod
    def _check(cls, settings: HiggsSettings, need_gpu: bool) -> str | None:
        from .. import model as weights

        for module in ("torch", "transformers"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed: add the higgs engine with `pip install \"higgs-cli[higgs]\"` (in a checkout: `make install-higgs`)"
        for spec, default, env, rev in ((settings.model, DEFAULT_MODEL, "HIGGS_MODEL", settings.revision),
                                        (settings.codec, DEFAULT_CODEC, "HIGGS_CODEC", settings.codec_revision)):
            spec = weights.model_spec(spec, default, env)
            if not weights.weights_present(spec, rev):
                return f"weights {spec} are not available locally (run `higgs model download` or pass --model/--codec DIR)"
        if need_gpu:
            import torch  # the weights are here, so paying for this import is worth it

            if not torch.cuda.is_available():
                return "no CUDA GPU (`--engine higgs --device cpu` runs it anyway, about 50x slower than real time)"
        return None

    @classmethod
    def preview(cls, plan: Any) -> dict[str, Any] | None:
        """The conversations the first chunks would get (references by path, context and anchors by chunk index)."""
        settings: HiggsSettings = plan.options.higgs
        prompts = []
        for anchor in anchors(plan):
            state = JobState({anchor.speaker: anchor.voice}, settings)
            prompts.append({"chunk": anchor.index, "anchor": anchor.speaker,
                            "conversation": state.prompt(anchor.speaker, anchor.text, []).conversation()})
        for chunk in plan.chunks[:PREVIEW_CHUNKS]:
            state = chain_state(plan, chunk.index)
            prompt = state.prompt(chunk.speaker, chunk.text, state.context())
            prompts.append({"chunk": chunk.index, "conversation": prompt.conversation()})
        return {"model": settings.model, "codec": settings.codec, "revision": settings.revision,
                "context_chunks": settings.context_chunks, "chains": len(job_chains(plan)),
                "scene": scene_text(settings.scene, settings.emotion, settings.speed), "context_limit": settings.context_limit,
                "prompts": prompts}

    # a job ----------------------------------------------------------------------------------------
    def begin(self, plan: Any) -> None:
        self._begin(plan.cast, job_chains(plan))

    def add_job(self, plan: Any) -> int:
        """Another plan rendered alongside the first (a book's chapter files); its requests carry the returned job."""
        self._jobs.append(_Job(plan.cast, job_chains(plan), plan.options.higgs, self.settings.context_limit))
        return len(self._jobs) - 1

    def end_job(self, job: int) -> None:
        """A job added with add_job is over (a server request done or cancelled): drop its state; its chains stop."""
        self._ended.add(job)
        self._say_trimmed([self._jobs[job]])
        self._jobs[job] = _Job({}, [])
        for key in [k for k in self._chains if k[0] == job]:
            del self._chains[key]

    def _chain_for(self, request: ChunkRequest) -> _Chain:
        """An anchor gets a chain of its own with only its speaker; a chunk its chain's, anchors pinned."""
        job = self._jobs[request.job]
        if request.index < 0:
            return _Chain(JobState({request.speaker: request.voice}, job.settings or self.settings))
        if request.speaker not in job.cast:  # used without begin(): speakers join as they come
            job.cast[request.speaker] = request.voice
            for (j, _), other in self._chains.items():
                if j == request.job:
                    other.state.voices[request.speaker] = request.voice
                    other.state.tags[request.speaker] = f"SPEAKER{len(other.state.tags)}"
        key = (request.job, job.chain_of.get(request.index, -1))
        if key not in self._chains:
            chain = self._chains[key] = _Chain(JobState(job.cast, job.settings or self.settings))
            for anchor, codes in job.anchors.values():
                chain.codes[anchor.index] = codes
                chain.state.record(anchor.index, anchor.speaker, anchor.text)
        return self._chains[key]

    def _remember(self, request: ChunkRequest, chain: _Chain, codes: Any) -> None:
        if request.index < 0:
            self._jobs[request.job].anchors[request.speaker] = (request, codes)
            for (j, _), other in self._chains.items():  # anchors come first; this keeps a late one consistent too
                if j == request.job:
                    other.codes[request.index] = codes
                    other.state.record(request.index, request.speaker, request.text)
        else:
            chain.remember(request, codes)

    def synthesize(self, request: ChunkRequest) -> ChunkAudio:
        chain = self._chain_for(request)
        lock = chain.state.locks.get(request.speaker)
        prompt, context, max_new = self._fit(request, chain)
        codes = self._checked(request, self._generate(prompt, chain, max_new, request.seed))
        audio = self._decode(codes, chain.tail)
        self._remember(request, chain, codes)
        return self._result(request, chain, audio, codes, context, lock)

    def reuse(self, request: ChunkRequest, cached: ChunkAudio) -> None:
        """A cached chunk rejoins the job: its codes become context and decoder left context."""
        import torch

        codes = torch.from_numpy(cached.state["codes"].astype(np.int64))
        self._remember(request, self._chain_for(request), codes)

    def close(self) -> None:
        self._chains.clear()
        self._begin({}, [])

    def _say_trimmed(self, jobs: list[_Job] | None = None) -> None:
        """The budget's one message per job (what was trimmed, with the numbers), when anything was."""
        for job in getattr(self, "_jobs", []) if jobs is None else jobs:
            message = job.report.message()
            if message:
                log.warning(message)

    def _checked(self, request: ChunkRequest, codes: Any) -> Any:
        if codes.shape[1] == 0:
            raise RenderError(f"chunk {request.index} produced no audio; retry with another --seed or raise --max-new-tokens")
        return codes

    def _result(self, request: ChunkRequest, chain: _Chain, audio: np.ndarray, codes: Any, context: list[ContextChunk],
                lock: ContextChunk | None) -> ChunkAudio:
        info = {"frames": int(codes.shape[1]), "context": [c.index for c in context],
                "voice_lock": lock.index if lock else None}
        if request.index >= 0:
            info["chain"] = self._jobs[request.job].chain_of.get(request.index, 0)
        return ChunkAudio(audio, info, {"codes": codes.numpy().astype(np.int16)})

    # batched chains -------------------------------------------------------------------------------
    def render_batch(self, items: list[tuple[ChunkRequest, ChunkAudio | None]], width: int) -> Iterator[tuple[ChunkRequest, ChunkAudio]]:
        """Render every item without cached audio, `width` chains at a time; yields (request, audio) as each is decoded.

        Items come in plan order, anchors first; a cached item rejoins its chain's context. Anchors are
        generated first (a chain each), then the chains of every job (begin, add_job) in order. Codec decoding runs on a worker thread (its
        own CUDA stream on a GPU) while the next frames are generated.
        """
        from concurrent.futures import ThreadPoolExecutor

        anchor_groups, chain_groups = self._groups(items)
        with ThreadPoolExecutor(1, thread_name_prefix="higgs-codec") as pool:
            for stage in (anchor_groups, chain_groups):
                yield from self._stream(stage, width, pool)

    def _groups(self, items: list[tuple[ChunkRequest, ChunkAudio | None]]) -> tuple[list[list[Any]], list[list[Any]]]:
        """Each anchor alone, and each (job, chain)'s items in order: the units a batch row works through."""
        groups: dict[tuple[int, int], list[tuple[ChunkRequest, ChunkAudio | None]]] = {}
        for n, (request, cached) in enumerate(items):
            key = (-1, n) if request.index < 0 else (request.job, self._jobs[request.job].chain_of.get(request.index, 0))
            groups.setdefault(key, []).append((request, cached))
        return [g for k, g in groups.items() if k[0] < 0], [g for k, g in sorted(groups.items()) if k[0] >= 0]

    def chains(self, items: list[tuple[ChunkRequest, ChunkAudio | None]]) -> list[list[tuple[ChunkRequest, ChunkAudio | None]]]:
        anchor_groups, chain_groups = self._groups(items)
        return anchor_groups + chain_groups

    def render_stream(self, take: Callable[[], list[list[tuple[ChunkRequest, ChunkAudio | None]]]],
                      width: int) -> Iterator[tuple[ChunkRequest, ChunkAudio]]:
        """Chains from take() share the batch's rows as they arrive (a server's requests); see Engine.render_stream."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="higgs-codec") as pool:
            yield from self._stream([], width, pool, take)

    def _stream(self, groups: list[list[tuple[ChunkRequest, ChunkAudio | None]]], width: int, pool: Any,
                take: Callable[[], list[list[tuple[ChunkRequest, ChunkAudio | None]]]] | None = None) -> Iterator[tuple[ChunkRequest, ChunkAudio]]:
        from .. import fastgen

        cfg, device = self._m.model.config, self._m.device
        position = [0] * len(groups)
        current: dict[int, tuple[ChunkRequest, _Chain, list[ContextChunk], ContextChunk | None]] = {}

        def more() -> int:
            new = take() if take is not None else []
            groups.extend(new)
            position.extend([0] * len(new))
            return len(new)

        def feed(n: int) -> Any:
            while position[n] < len(groups[n]):
                request, cached = groups[n][position[n]]
                if request.job in self._ended:  # its request is over: the chain stops here
                    position[n] = len(groups[n])
                    return None
                position[n] += 1
                if cached is not None:
                    self.reuse(request, cached)
                    continue
                chain = self._chain_for(request)
                prompt, context, max_new = self._fit(request, chain)
                current[n] = (request, chain, context, chain.state.locks.get(request.speaker))
                inputs = self._inputs(prompt, chain)
                audio = inputs.get("audio_input_ids")
                return fastgen.Request(inputs["input_ids"][0], None if audio is None else audio[0], request.seed, max_new,
                                       prefix=inputs["prefix"])
            return None

        sampling = fastgen.Sampling.from_config(sampling_config(self._m.model.generation_config, self.settings, 1))
        pending: list[tuple[ChunkRequest, _Chain, Any, list[ContextChunk], ContextChunk | None, Any]] = []
        for n, frames in fastgen.stream(self._m.model, len(groups), feed, sampling, width=width,
                                        graphs=device.type == "cuda", length=FAST_CACHE_STEP, more=more if take else None,
                                        limit=self.settings.context_limit):
            request, chain, context, lock = current.pop(n)
            codes = self._checked(request, extract_codes(frames, cfg.audio_stream_bos_id, cfg.audio_stream_eos_id))
            left = chain.tail
            self._remember(request, chain, codes)  # before the chain's next request is built from it
            pending.append((request, chain, codes, context, lock, pool.submit(self._decode_aside, codes, left)))
            while pending and pending[0][-1].done():
                yield self._finished(pending.pop(0))
        while pending:
            yield self._finished(pending.pop(0))

    def _finished(self, item: tuple[Any, ...]) -> tuple[ChunkRequest, ChunkAudio]:
        request, chain, codes, context, lock, future = item
        return request, self._result(request, chain, future.result(), codes, context, lock)

    def _decode_aside(self, codes: Any, left: Any | None) -> np.ndarray:
        import torch

        if self._m.device.type != "cuda":
            return self._decode(codes, left)
        if getattr(self, "_codec_stream", None) is None:
            self._codec_stream = torch.cuda.Stream(self._m.device)
        # a worker thread starts on device 0: make ours current before choosing its stream (--device cuda:1)
        with torch.cuda.device(self._m.device), torch.cuda.stream(self._codec_stream):
            return self._decode(codes, left)

    # prompt budget --------------------------------------------------------------------------------
    def _fit(self, request: ChunkRequest, chain: _Chain) -> tuple[Prompt, list[ContextChunk], int]:
        """Drop the oldest context until prompt + the chunk's expected frames fit the context limit; then allow
        what is left, up to --max-new-tokens (higgs_budget)."""
        limit, state = self.settings.context_limit, chain.state
        context = state.context()
        base = self._positions(state.prompt(request.speaker, request.text, []), chain)
        costs = [self._positions(state.prompt(request.speaker, request.text, [c]), chain) - base for c in context]
        fit = fit_chunk(base, costs, expected_frames(request.text, self.settings.max_new_tokens), self.settings.max_new_tokens, limit)
        context = context[len(context) - fit.keep:]
        prompt = state.prompt(request.speaker, request.text, context)
        if fit.max_new < min(self.settings.max_new_tokens, MIN_NEW_FRAMES + self._m.num_codebooks):
            raise RenderError(f"chunk {request.index}: the prompt leaves {fit.max_new} of {limit} positions for audio; "
                              f"raise --context-limit, or use shorter reference clips or shorter chunks (--max-words)")
        if request.index >= 0:  # anchors have no context to trim
            self._jobs[request.job].report.note(request.index, fit, base + sum(costs[len(costs) - fit.keep:]))
        return prompt, context, fit.max_new

    def _positions(self, prompt: Prompt, chain: _Chain) -> int:
        """Sequence positions a prompt takes once every audio item is expanded to its frames."""
        items = prompt.audio_items()
        text_tokens = len(self._m.processor.tokenizer(prompt.render(), add_special_tokens=False)["input_ids"])
        frames = sum(audio_positions(self._item_codes(ref, chain).shape[1], self._m.num_codebooks) for ref in items)
        return text_tokens - len(items) + frames

    # generation -----------------------------------------------------------------------------------
    def _inputs(self, prompt: Prompt, chain: _Chain) -> dict[str, Any]:
        import torch

        cfg = self._m.model.config
        blocks = [with_stream_markers(self._item_codes(ref, chain), cfg.audio_stream_bos_id, cfg.audio_stream_eos_id)
                  for ref in prompt.audio_items()]
        inputs = self._m.processor.tokenizer(self._expand(prompt.render(), blocks), add_special_tokens=False, return_tensors="pt")
        batch = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
        if blocks:
            audio = torch.cat(blocks, dim=0)[None]
            batch["audio_input_ids"] = audio
            batch["audio_input_ids_mask"] = torch.ones(audio.shape[:2], dtype=torch.bool)
        out = {k: v.to(self._m.device) for k, v in batch.items()}
        out["prefix"] = self._shared_length(prompt, blocks, inputs["input_ids"][0]) if self._share_prefix else 0
        return out

    def _expand(self, text: str, blocks: list[Any]) -> str:
        """Each audio placeholder becomes as many audio tokens as its block has frames."""
        proc = self._m.processor
        pieces = text.split(AUDIO_TOKEN)
        return pieces[0] + "".join(proc.get_audio_tokens(b.shape[0]) + p for b, p in zip(blocks, pieces[1:], strict=True))

    def _shared_length(self, prompt: Prompt, blocks: list[Any], ids: Any) -> int:
        """Tokens of the system prompt and references (the same for every chunk of the job); 0 if they do not tile."""
        shared = prompt.shared()
        head = self._expand(shared.render(generation=False), blocks[:len(shared.audio_items())])
        head_ids = self._m.processor.tokenizer(head, add_special_tokens=False)["input_ids"]
        n = len(head_ids)
        return n if 0 < n < len(ids) and ids[:n].tolist() == head_ids else 0

    def _generate(self, prompt: Prompt, chain: _Chain, max_new: int, seed: int) -> Any:
        import torch

        inputs = self._inputs(prompt, chain)
        cfg = self._m.model.config
        gen_config = sampling_config(self._m.model.generation_config, self.settings, max_new)
        if self._fast_decoding():
            return self._generate_fast(inputs, gen_config, max_new, seed)
        device = self._m.device
        devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
        inputs.pop("prefix")
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            out = self._m.model.generate(**inputs, generation_config=gen_config)
        prompt_frames = inputs["audio_input_ids"].shape[1] if "audio_input_ids" in inputs else 0
        return extract_codes(out[0, prompt_frames:].cpu(), cfg.audio_stream_bos_id, cfg.audio_stream_eos_id)

    def _fast_decoding(self) -> bool:
        # `auto` stays on transformers' generate() for one chain at a time until the fast loop has run on a
        # real GPU: it is verified frame-exact on CPU only (see BENCHMARKS.md, "Higgs on one GPU").
        return self.settings.decoder == "fast"

    def _generate_fast(self, inputs: dict[str, Any], gen_config: Any, max_new: int, seed: int) -> Any:
        """One chain on the static-cache loop (CUDA graphs on a GPU); the same frames as generate() for greedy."""
        from .. import fastgen

        cfg, device = self._m.model.config, self._m.device
        audio = inputs.get("audio_input_ids")
        request = fastgen.Request(inputs["input_ids"][0], None if audio is None else audio[0], seed, max_new,
                                  prefix=inputs["prefix"])
        if not fastgen.StaticDecoder.fits(self._fast, 1, request.length()):  # grow-only, so graphs are rarely recaptured
            length = min(max(self.settings.context_limit, request.length()), -(-request.length() // FAST_CACHE_STEP) * FAST_CACHE_STEP)
            self._fast = fastgen.StaticDecoder(self._m.model, 1, length, graphs=device.type == "cuda")
        frames = fastgen.generate(self._m.model, [request], fastgen.Sampling.from_config(gen_config), decoder=self._fast)[0]
        return extract_codes(frames, cfg.audio_stream_bos_id, cfg.audio_stream_eos_id)

    def _decode(self, codes: Any, left: Any | None) -> np.ndarray:
        import torch

        codec = self._m.codec

        def run(full: Any) -> np.ndarray:
            with torch.inference_mode():
                wav = codec.decode(full[None].to(self._m.device)).audio_values
            return wav[0, 0].float().cpu().numpy()

        return decode_joined(run, codes, left, self._m.hop_length)

    # audio items ----------------------------------------------------------------------------------
    def _item_codes(self, ref: AudioRef, chain: _Chain) -> Any:
        if ref.chunk is not None:
            return chain.codes[ref.chunk]
        assert ref.clip is not None
        if ref.clip not in self._clips:
            self._clips[ref.clip] = self._encode_clip(ref.clip)
        return self._clips[ref.clip]

    def _encode_clip(self, path: str) -> Any:
        import torch

        from ..audio import resample
        from ..options import SAMPLE_RATE
        from ..voices import prepare_clip

        audio, _ = prepare_clip(Path(path))
        audio = resample(np.asarray(audio, dtype=np.float32), SAMPLE_RATE, self.sample_rate)
        features = self._m.processor.feature_extractor(audio, sampling_rate=self.sample_rate, return_tensors="pt")
        with torch.inference_mode():
            codes = self._m.codec.encode(features["input_values"].to(self._m.device)).audio_codes
        return codes[0].cpu()
