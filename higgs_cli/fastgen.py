"""Fast Higgs Audio v2 decoding: a static KV cache, per-sequence positions, stops and seeds, optional CUDA graphs.

This is the loop of transformers' `HiggsAudioV2ForConditionalGeneration.generate()` rewritten for speed over
the same modules and weights. Each prompt is prefilled by transformers' own forward; every later step feeds
one audio frame per sequence through the audio path of each decoder layer (the DualFFN audio norms and MLP,
which is what transformers runs once only audio tokens are fed) against preallocated key/value tensors, and
samples on the device. The text head is never computed. B independent prompts step together, each at its own
position with its own stop condition and torch.Generator, so a batch returns what B solo runs return.

What matches transformers exactly: the delay pattern (stream BOS forced on codebook k for the first k + 1
steps; after the first stream EOS one more codebook is forced to EOS per step), the logits warpers (its own
Temperature, TopK and TopP classes, in its order) and the stop rule (a row of all stream EOS, or `max_new`
frames). With `exact` (the default off CUDA) tokens are drawn with torch.multinomial from each sequence's
generator in generate()'s order, repetition-aware sampling (RAS) included, so sampled frames equal plain
generate's; that costs a few kernel launches per row per step and a host synchronisation where RAS fires.
Without it (the CUDA default) every row draws blocks of NOISE_BLOCK steps of Gumbel noise from its own
generators (one for tokens, one for RAS redraws) and a step samples the whole batch with one argmax over
log-probabilities plus noise: deterministic per seed and batch-invariant, with a constant number of kernel
launches per step whatever the width. torch.multinomial draws a single sample by this same exponential trick,
so on the CPU the frames equal plain generate's until RAS first fires (tested); on CUDA the generator's
offsets per launch differ, so there it is the same distribution, not the same frames.

CUDA graphs (`graphs=True`, CUDA only) capture one decode step of the whole batch, one graph per attention
span (ATTENTION_BUCKET steps of the cache, so attention reads what the longest live sequence needs, not the
whole static cache); sampling runs eagerly after each replay, and the loop checks for finished sequences only
every `sync_every` steps.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .compat import cache_kwarg, returned_cache

LENGTH_QUANTUM = 256  # static caches are sized in multiples of this, so captured graphs can be reused
ATTENTION_BUCKET = 512  # a step reads keys up to the longest live sequence, rounded up to this
PREFIXES_KEPT = 4  # shared prompt prefixes whose keys/values a decoder keeps (a job has one, plus its anchors')
RAS_STREAM_OFFSET = 0x5EED_0F_4A5  # seed offset of the second per-sequence stream used by sync-free RAS
NOISE_BLOCK = 32  # steps of Gumbel noise a row draws at once without `exact` (per row: 2 x 32 x K x V floats)


@dataclass(frozen=True)
class Sampling:
    """Token selection: temperature 0 is greedy; top_k <= 0 and top_p >= 1 are off; ras_window 0 disables RAS."""

    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 0.95
    ras_window: int = 7
    ras_max_repeat: int = 2

    @classmethod
    def from_config(cls, gc: Any) -> Sampling:
        """The settings transformers would use for a GenerationConfig (as built by the engine's sampling_config)."""
        temperature = (gc.temperature if gc.temperature is not None else 1.0) if gc.do_sample else 0.0
        window, repeat = getattr(gc, "ras_win_len", None) or 0, getattr(gc, "ras_win_max_num_repeat", None) or 0
        on = 0 < repeat <= window  # a window shorter than the repeat count can never fire: RAS off
        return cls(temperature=temperature, top_k=gc.top_k or 0, top_p=gc.top_p if gc.top_p is not None else 1.0,
                   ras_window=window if on else 0, ras_max_repeat=repeat if on else 1)

    def warpers(self) -> list[Any]:
        """transformers' own warpers, in generate()'s order (greedy uses none)."""
        from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        if self.temperature <= 0:
            return []
        out: list[Any] = []
        if self.temperature != 1.0:
            out.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k > 0:
            out.append(TopKLogitsWarper(top_k=self.top_k, min_tokens_to_keep=1))
        if self.top_p < 1.0:
            out.append(TopPLogitsWarper(top_p=self.top_p, min_tokens_to_keep=1))
        return out


@dataclass(frozen=True)
class Request:
    """One prompt: text ids (T,), its audio frames (F, K) in delay-pattern layout (or None), a seed, a frame budget.

    `prefix` > 0 names how many leading tokens many requests share (system prompt and reference clips): their
    keys/values are computed once per decoder and copied into each row, and only the rest is prefilled.
    """

    input_ids: Any
    audio_ids: Any | None
    seed: int
    max_new: int
    prefix: int = 0

    def length(self) -> int:
        return int(self.input_ids.shape[-1]) + self.max_new


# --- the model side: prefill into, and decode against, a static cache ------------------------------
class StaticDecoder:
    """Preallocated keys/values for `batch` sequences of `length` positions and the one-frame decode step.

    Reuse one across calls of `generate` (the engine does, chunk after chunk): with `graphs` the step is
    captured once, at construction, before any prefill writes into the cache.
    """

    def __init__(self, model: Any, batch: int, length: int, graphs: bool = False):
        with torch.inference_mode():
            self._allocate(model, batch, length, graphs)

    def _allocate(self, model: Any, batch: int, length: int, graphs: bool) -> None:
        cfg = model.config
        self.model, self.batch, self.length = model, batch, length
        self.device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        shape = (batch, cfg.num_key_value_heads, length, cfg.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(cfg.num_hidden_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(cfg.num_hidden_layers)]
        self.rows = torch.arange(batch, device=self.device)
        self.span = torch.arange(length, device=self.device)
        probe = torch.zeros(1, dtype=dtype, device=self.device)
        cos, sin = model.model.rotary_emb(probe, self.span[None])  # the same per-position values a step computes
        self.cos, self.sin = cos[0], sin[0]
        self._prefixes: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.graphs: dict[int, Any] = {}  # keys read -> captured step; empty when stepping eagerly
        self._logits: dict[int, torch.Tensor] = {}
        if graphs:
            if self.device.type != "cuda":
                raise ValueError("CUDA graphs need a CUDA device; use graphs=False on the CPU")
            k = model.config.num_codebooks
            self._frames = torch.zeros((batch, k), dtype=torch.long, device=self.device)
            self._positions = torch.zeros(batch, dtype=torch.long, device=self.device)
            self._capture(length)  # before any prefill: its warm-up writes land at position 0

    @staticmethod
    def fits(decoder: StaticDecoder | None, batch: int, length: int) -> bool:
        return decoder is not None and decoder.batch == batch and decoder.length >= length

    def grown(self, length: int) -> StaticDecoder:
        """A decoder with room for `length` positions holding this one's keys and values (graphs re-captured)."""
        bigger = type(self)(self.model, self.batch, length, graphs=bool(self.graphs))
        bigger._prefixes = self._prefixes
        with torch.inference_mode():
            for old, new in zip(self.keys + self.values, bigger.keys + bigger.values, strict=True):
                new[:, :, :self.length] = old
        return bigger

    def prefill(self, slot: int, request: Request) -> torch.Tensor:
        """Run transformers' forward over one prompt, copy its keys/values into `slot`; the next-frame logits (K*V,).

        With a shared prefix the forward covers only the tokens after it, attending to the prefix's stored keys and
        values, so the result is the same whether the prefix was already stored or not (not bit-equal to one
        forward over the whole prompt: the split changes float rounding).
        """
        ids, audio = request.input_ids.to(self.device), request.audio_ids
        start, past = 0, None
        if 0 < request.prefix < len(ids):
            start, past = request.prefix, self._prefix_cache(ids, audio, request.prefix)
            audio = None if audio is None else audio[self._audio_frames(ids[:start]):]
        out = self._forward_prompt(ids[start:], audio, past, start)
        n = len(ids)
        for layer, k, v in zip(returned_cache(out).layers, self.keys, self.values, strict=True):
            k[slot, :, :n] = layer.keys[0]
            v[slot, :, :n] = layer.values[0]
        return self.model.audio_lm_head(out.last_hidden_state[0, -1]).float()

    def _forward_prompt(self, ids: torch.Tensor, audio: Any | None, past: Any | None, start: int) -> Any:
        kwargs: dict[str, Any] = {"input_ids": ids[None], "attention_mask": torch.ones((1, start + len(ids)), dtype=torch.long,
                                                                                       device=self.device)}
        if audio is not None and len(audio):
            audio = audio.to(self.device)[None]
            kwargs["audio_input_ids"] = audio
            kwargs["audio_input_ids_mask"] = torch.ones(audio.shape[:2], dtype=torch.bool, device=self.device)
        return self.model.model(**kwargs, **{cache_kwarg(self.model.model): past}, use_cache=True)

    def _audio_frames(self, ids: torch.Tensor) -> int:
        cfg = self.model.config
        return int(((ids == cfg.audio_token_id) | (ids == cfg.audio_delay_token_id)).sum())

    def _prefix_cache(self, ids: torch.Tensor, audio: Any | None, n: int) -> Any:
        """A fresh transformers cache holding the prefix's keys/values (computed on first use, then kept)."""
        from transformers import DynamicCache

        frames = self._audio_frames(ids[:n])
        head = None if audio is None else audio[:frames]
        key = hashlib.sha256(ids[:n].cpu().numpy().tobytes() + (b"" if head is None else head.cpu().numpy().tobytes())).hexdigest()
        if key not in self._prefixes:
            out = self._forward_prompt(ids[:n], head, None, 0)
            self._prefixes[key] = [(layer.keys.clone(), layer.values.clone()) for layer in returned_cache(out).layers]
            while len(self._prefixes) > PREFIXES_KEPT:
                self._prefixes.pop(next(iter(self._prefixes)))
        cache = DynamicCache(config=self.model.config)
        for i, (k, v) in enumerate(self._prefixes[key]):
            cache.update(k, v, i)
        return cache

    def step(self, frames: torch.Tensor, positions: torch.Tensor, reach: int | None = None) -> torch.Tensor:
        """Logits (B, K*V) for one audio frame (B, K) per sequence written at `positions` (B,).

        `reach` (> every position) bounds the keys attention reads: rounded up to ATTENTION_BUCKET, so a step
        costs what the longest live sequence needs rather than the whole cache; one CUDA graph per bucket.
        """
        span = self.length if reach is None else min(self.length, -(-reach // ATTENTION_BUCKET) * ATTENTION_BUCKET)
        if not self.graphs:
            return self._forward(frames, positions, span)
        self._frames.copy_(frames)
        self._positions.copy_(positions)
        if span not in self.graphs:  # captured on first use; its warm-up recomputes this very step, so writes agree
            self._capture(span)
        with torch.cuda.device(self.device):  # replay on this device's current stream, whichever device is current
            self.graphs[span].replay()
        return self._logits[span]

    def _forward(self, frames: torch.Tensor, positions: torch.Tensor, span: int) -> torch.Tensor:
        inner = self.model.model
        h = inner.embed_audio_tokens(frames[:, None, :])
        cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]
        visible = (self.span[None, :span] <= positions[:, None])[:, None, None, :]
        for layer, k, v in zip(inner.layers, self.keys, self.values, strict=True):
            h = self._layer(layer, h, (cos, sin), visible, positions, k, v)
        return self.model.audio_lm_head(inner.norm(h)[:, 0]).float()

    def _layer(self, layer: Any, h: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], visible: torch.Tensor,
               positions: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """One decoder layer on audio tokens only: audio norm, attention over the cache, audio norm + MLP."""
        from transformers.models.higgs_audio_v2.modeling_higgs_audio_v2 import apply_rotary_pos_emb

        attn, b = layer.self_attn, h.shape[0]
        x = layer.audio_input_layernorm(h)
        q = attn.q_proj(x).view(b, 1, -1, attn.head_dim).transpose(1, 2)
        k = attn.k_proj(x).view(b, 1, -1, attn.head_dim).transpose(1, 2)
        v = attn.v_proj(x).view(b, 1, -1, attn.head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, *rope)
        keys[self.rows, :, positions] = k[:, :, 0]
        values[self.rows, :, positions] = v[:, :, 0]
        # the query heads sharing a key/value head become that head's query rows: grouped attention without
        # expanding the cache (query head h reads kv head h // groups, as transformers' repeat_kv does)
        grouped = q.reshape(b, keys.shape[1], attn.num_key_value_groups, attn.head_dim)
        span = visible.shape[-1]
        o = F.scaled_dot_product_attention(grouped, keys[:, :, :span], values[:, :, :span], attn_mask=visible, scale=attn.scaling)
        h = h + attn.o_proj(o.reshape(b, 1, -1))
        return h + layer.audio_mlp(layer.audio_post_attention_layernorm(h))

    def _capture(self, span: int) -> None:
        """Record one decode step over `span` keys in a CUDA graph (each graph keeps its own memory pool: buckets
        replay in any order, which a shared pool does not allow). Under the decoder's device context: the graph,
        its capture stream and its pool belong to the current device, which need not be ours (`--device cuda:1`)."""
        with torch.cuda.device(self.device):
            self._capture_here(span)

    def _capture_here(self, span: int) -> None:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._forward(self._frames, self._positions, span)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread-local: the engine's codec thread may be decoding on its own stream while a bucket is captured
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self._logits[span] = self._forward(self._frames, self._positions, span)
        self.graphs[span] = graph


# --- the sampling side: delay pattern, warpers, RAS, stop rule ----------------------------------------
class _Chains:
    """Per-row sampling state on the device, advanced one frame at a time for the whole batch.

    A row holds one request at a time; `load(row, request)` starts a new one in that row (a chain's next
    chunk, or another chain's) without touching the others, which is what continuous batching needs.
    """

    def __init__(self, cfg: Any, width: int, sampling: Sampling, device: Any, exact: bool):
        self.cfg, self.sampling, self.exact, self.device = cfg, sampling, exact, device
        self.k, self.v = cfg.num_codebooks, cfg.codebook_size
        self.bos, self.eos = cfg.audio_stream_bos_id, cfg.audio_stream_eos_id
        self.warpers = sampling.warpers()
        self.window = max(sampling.ras_window, 1)
        self.gens: list[torch.Generator | None] = [None] * width
        self.ras_gens: list[torch.Generator | None] = [None] * width
        self.bos_pattern = torch.zeros((width, self.k), dtype=torch.long, device=device)
        self.eos_pattern = torch.zeros((width, self.k), dtype=torch.long, device=device)
        self.last_text = torch.zeros(width, dtype=torch.long, device=device)
        self.recent = torch.full((width, self.window, self.k), self.eos, dtype=torch.long, device=device)
        self.max_new = torch.zeros(width, dtype=torch.long, device=device)
        self.done = torch.ones(width, dtype=torch.bool, device=device)  # an empty row counts as done
        self.steps = torch.zeros(width, dtype=torch.long, device=device)  # frames chosen for the row's request
        vocab = torch.arange(self.v, device=device)
        self.not_bos, self.not_eos = vocab != self.bos, vocab != self.eos
        self.gumbel = not exact and sampling.temperature > 0
        if self.gumbel:  # [stream][row, step in block, codebook, code]: 0 for tokens, 1 for RAS redraws
            self.noise = torch.zeros((2, width, NOISE_BLOCK, self.k, self.v), dtype=torch.float32, device=device)
            self.clock = [0] * width  # steps since the row's request was loaded (host side: no sync needed)
            self.phase = torch.zeros(width, dtype=torch.long, device=device)
            self.rows = torch.arange(width, device=device)

    def load(self, row: int, request: Request) -> None:
        self.gens[row] = _generator(self.device, request.seed)
        self.ras_gens[row] = _generator(self.device, request.seed + RAS_STREAM_OFFSET)
        self.bos_pattern[row] = _bos_pattern(request.input_ids, self.cfg).to(self.device)
        self.eos_pattern[row] = _eos_pattern(request.input_ids, self.cfg).to(self.device)
        self.last_text[row] = request.input_ids[-1].to(self.device)
        self.recent[row] = _recent(request.audio_ids, self.window, self.k, self.eos).to(self.device)
        self.max_new[row] = request.max_new
        self.done[row] = False
        self.steps[row] = 0
        if self.gumbel:
            self.clock[row] = 0
            self.phase[row] = 0
            self._draw_noise(row)

    def _draw_noise(self, row: int) -> None:
        """The row's next NOISE_BLOCK steps of Gumbel noise, -log(Exp(1)), from its own two generators."""
        for stream, gen in enumerate((self.gens[row], self.ras_gens[row])):
            gumbel_(self.noise[stream, row], gen)

    def _tick(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's noise for every row (token and RAS), refilling the blocks of rows that used theirs up."""
        for row, t in enumerate(self.clock):
            if t and t % NOISE_BLOCK == 0 and self.gens[row] is not None:
                self._draw_noise(row)
        tokens, ras = self.noise[0, self.rows, self.phase], self.noise[1, self.rows, self.phase]
        self.clock = [t + 1 for t in self.clock]
        self.phase = (self.phase + 1) % NOISE_BLOCK
        return tokens, ras

    def advance(self, logits: torch.Tensor) -> torch.Tensor:
        """Choose the next frame (B, K) from raw logits (B, K*V) and update delay pattern and stop state."""
        raw = logits.view(-1, self.k, self.v)
        scores = self._delay_pattern(raw.clone())
        flat = scores.view(-1, self.v)
        for warp in self.warpers:
            flat = warp(None, flat)
        noise = self._tick() if self.gumbel else None
        frames = self._select(flat.view(-1, self.k, self.v), noise)
        if self.sampling.ras_window > 0:
            frames = self._ras(frames, raw, noise)
        frames = torch.where(self.done[:, None], self.eos, frames)
        self._bookkeep(frames)
        return frames

    def _delay_pattern(self, scores: torch.Tensor) -> torch.Tensor:
        """HiggsAudioV2DelayPatternLogitsProcessor, per sequence."""
        force_bos = self.bos_pattern >= 0
        scores.masked_fill_(force_bos[..., None] & self.not_bos, -float("inf"))
        self.bos_pattern -= force_bos.long()
        self.eos_pattern -= (self.last_text == self.cfg.audio_delay_token_id).long()[:, None]
        force_eos = self.eos_pattern <= 0
        return scores.masked_fill_(force_eos[..., None] & self.not_eos, -float("inf"))

    def _select(self, scores: torch.Tensor, noise: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        if self.sampling.temperature <= 0:
            return scores.argmax(-1)
        if noise is not None:  # Gumbel-max: argmax(log p + G) is a draw from p
            return gumbel_max(scores, noise[0])
        probs = scores.softmax(-1)
        return torch.stack([self._draw(p, g) for p, g in zip(probs, self.gens, strict=True)])

    def _draw(self, probs: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        if gen is None:  # an empty row: its frame is replaced by EOS anyway
            return probs.argmax(-1)
        return torch.multinomial(probs, 1, generator=gen).squeeze(1)

    def _ras(self, frames: torch.Tensor, raw: torch.Tensor, noise: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """Repetition-aware sampling: a code seen `ras_max_repeat` times in the window is redrawn from the raw logits."""
        w = self.recent[:, -self.sampling.ras_window:]
        counted = (w == frames[:, None]) & (w != self.bos) & (w != self.eos)
        replace = (counted.sum(1) >= self.sampling.ras_max_repeat) & ~self.done[:, None]
        if noise is not None:
            return torch.where(replace, gumbel_max(raw, noise[1]), frames)
        if self.exact:  # the same draws, from the same generator, as transformers' generate
            for b, gen in enumerate(self.gens):
                if bool(replace[b].any()):
                    frames[b, replace[b]] = raw[b, replace[b]].softmax(-1).multinomial(1, replacement=True, generator=gen).view(-1)
            return frames
        alt = torch.stack([self._draw(raw[b].softmax(-1), g).view(-1) for b, g in enumerate(self.ras_gens)])
        return torch.where(replace, alt, frames)

    def _bookkeep(self, frames: torch.Tensor) -> None:
        cfg = self.cfg
        any_eos, all_eos = (frames == self.eos).any(-1), (frames == self.eos).all(-1)
        text = torch.where(any_eos | (self.last_text == cfg.audio_delay_token_id), cfg.audio_delay_token_id, cfg.audio_token_id)
        self.last_text = torch.where(all_eos, _eos_token(cfg), text)
        live = ~self.done
        self.steps += live.long()
        self.done = self.done | (live & (all_eos | (self.max_new <= self.steps)))
        self.recent = torch.cat([self.recent[:, 1:], frames[:, None]], dim=1)


def gumbel_(out: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Fill `out` with standard Gumbel noise, -log(E) for E ~ Exp(1), from `gen`."""
    return out.exponential_(generator=gen).log_().neg_()


def gumbel_max(scores: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One draw per row from softmax(scores) over the last axis: argmax of log-probabilities plus Gumbel noise."""
    return (scores.float().log_softmax(-1) + noise).argmax(-1)


def _generator(device: Any, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _eos_token(cfg: Any) -> int:
    eos = cfg.eos_token_id
    return int(eos[0] if isinstance(eos, list | tuple) else eos)


def _pattern_start(input_ids: Any, token: int, k: int) -> int | None:
    """How far back (1 = the last token) the first `token` sits among the last k prompt tokens, if at all."""
    window = input_ids[-k:]
    hits = (window == token).nonzero()
    return k - int(hits[0, 0]) if len(hits) else None


def _bos_pattern(input_ids: Any, cfg: Any) -> torch.Tensor:
    k = cfg.num_codebooks
    after = _pattern_start(input_ids, cfg.audio_bos_token_id, k)
    delays = torch.arange(1, k + 1)
    return delays - after if after is not None else torch.zeros(k, dtype=torch.long)


def _eos_pattern(input_ids: Any, cfg: Any) -> torch.Tensor:
    k = cfg.num_codebooks
    after = _pattern_start(input_ids, cfg.audio_delay_token_id, k)
    delays = torch.arange(1, k + 1)
    return delays - after if after is not None else delays


def _recent(audio_ids: Any | None, window: int, k: int, eos: int) -> torch.Tensor:
    """The last `window` prompt audio frames, front-padded with stream EOS (which RAS never counts)."""
    out = torch.full((window, k), eos, dtype=torch.long)
    if audio_ids is not None and len(audio_ids):
        tail = audio_ids[-window:]
        out[window - len(tail):] = tail.cpu()
    return out


# --- the loop ------------------------------------------------------------------------------------------
def cache_length(requests: Sequence[Request]) -> int:
    """Positions a static cache needs for these requests, rounded up to LENGTH_QUANTUM."""
    return _quantum(max(r.length() for r in requests))


def _quantum(n: int) -> int:
    return -(-n // LENGTH_QUANTUM) * LENGTH_QUANTUM


Feed = Callable[[int], "Request | None"]


def stream(model: Any, chains: int, feed: Feed, sampling: Sampling, *, width: int | None = None,
           decoder: StaticDecoder | None = None, graphs: bool = False, exact: bool | None = None,
           sync_every: int = 16, length: int | None = None, more: Callable[[], int] | None = None,
           limit: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Run `chains` chains of requests, `width` at a time, as one batch; yield (chain, frames) as each request ends.

    `feed(chain)` returns that chain's next request, or None when the chain is over. It is called for a chain
    only after the chain's previous frames have been yielded and the consumer has resumed this generator, so
    a request may depend on everything its chain produced so far (rolling audio context). A finished row is
    refilled at once with the chain's next request or the next chain waiting, so the batch stays full.
    Every request is sampled from its own seed exactly as a run on its own would be: the frames of a chain
    do not depend on `width` or on which other chains share the batch.

    `decoder` is reused when it has `width` rows; its cache grows when a request does not fit (re-capturing
    the CUDA graph), with a quarter of headroom up to `limit` positions (the engine's context limit; the model's
    `max_position_embeddings` when not given). Chains are started in order; results come out in completion order.

    With `more` the set of chains is open (a server): at every host synchronisation `more()` says how many
    chains have arrived since (numbered on from the last) and idle rows take them; the run ends when no row
    is busy and `more()` has none. Without it `width` defaults to `chains`.
    """
    width = max(1, width or chains if more is not None else min(width or chains, chains))
    if chains <= 0 and more is None:
        return
    with torch.inference_mode():
        run = _Batch(model, width, sampling, decoder, graphs, exact, length, limit)
        yield from run.drive(chains, feed, sync_every, more)


def generate(model: Any, requests: Sequence[Request], sampling: Sampling, *, decoder: StaticDecoder | None = None,
             graphs: bool = False, exact: bool | None = None, sync_every: int = 16) -> list[torch.Tensor]:
    """Generated delayed audio frames (steps_i, K) per request, in order: what `model.generate` returns after the
    prompt's frames for each request run alone with `torch.manual_seed(seed)`; stops per sequence.

    Each request is a chain of one; all run as one batch. `exact` defaults to True off CUDA.
    """
    if not requests:
        return []
    out: dict[int, torch.Tensor] = {}
    fed = [False] * len(requests)

    def feed(chain: int) -> Request | None:
        first = not fed[chain]
        fed[chain] = True
        return requests[chain] if first else None

    for chain, frames in stream(model, len(requests), feed, sampling, width=len(requests), decoder=decoder,
                                graphs=graphs, exact=exact, sync_every=sync_every, length=cache_length(requests)):
        out[chain] = frames
    return [out[i] for i in range(len(requests))]


class _Batch:
    """The rows of one batched run: which chain each row serves, its position, its frames so far."""

    def __init__(self, model: Any, width: int, sampling: Sampling, decoder: StaticDecoder | None, graphs: bool,
                 exact: bool | None, length: int | None, limit: int | None = None):
        self.limit = limit or getattr(model.config, "max_position_embeddings", 0)
        if decoder is None or decoder.batch != width:
            decoder = StaticDecoder(model, width, _quantum(length or LENGTH_QUANTUM), graphs=graphs)
        self.decoder, self.width = decoder, width
        cfg, device = model.config, decoder.device
        exact = device.type != "cuda" if exact is None else exact
        self.chains = _Chains(cfg, width, sampling, device, exact)
        self.owner: list[int | None] = [None] * width
        self.positions = torch.zeros(width, dtype=torch.long, device=device)
        self.first = torch.zeros((width, cfg.num_codebooks * cfg.codebook_size), dtype=torch.float32, device=device)
        self.fresh = torch.zeros(width, dtype=torch.bool, device=device)  # rows whose next frame comes from prefill
        # host-side upper bounds of the rows' positions (exact for live rows), so steps need no sync to know them
        self.reach, self.reach_fresh = [0] * width, [False] * width
        self.out = torch.zeros((width, 1, cfg.num_codebooks), dtype=torch.long, device=device)
        self.eos = cfg.audio_stream_eos_id

    def drive(self, chains: int, feed: Feed, sync_every: int, more: Callable[[], int] | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        waiting, total = deque(range(chains)), chains
        frames = torch.full((self.width, self.chains.k), self.eos, dtype=torch.long, device=self.decoder.device)
        step = 0
        while True:
            if more is not None:  # chains that arrived meanwhile take the idle rows
                n = more()
                waiting.extend(range(total, total + n))
                total += n
            for row in range(self.width):
                if self.owner[row] is None and waiting:
                    self._fill(row, None, waiting, feed)
            if all(o is None for o in self.owner):
                break
            frames = self._step(frames)
            step += 1
            if step % sync_every and not self.chains.exact:
                continue
            ended = (self.chains.done & torch.tensor([o is not None for o in self.owner], device=self.decoder.device))
            for row in ended.nonzero().flatten().tolist():  # the host synchronisation: every `sync_every` steps
                chain = self.owner[row]
                assert chain is not None
                yield chain, self.out[row, :int(self.chains.steps[row])].to("cpu", copy=True)  # the row is reused next
                self._fill(row, chain, waiting, feed)

    def _step(self, frames: torch.Tensor) -> torch.Tensor:
        logits = self.decoder.step(frames, self.positions, reach=max(self.reach) + 1)
        logits = torch.where(self.fresh[:, None], self.first, logits)
        # a fresh row's step above only wrote a throw-away key at its prompt length, which its first real step
        # overwrites; a finished row stays where it is (so it does not widen attention) until it is refilled
        live = ~self.chains.done
        last = self.decoder.length - 1
        self.positions = (self.positions + (live & ~self.fresh).long()).clamp_(max=last)
        self.reach = [r if fresh else min(r + 1, last) for r, fresh in zip(self.reach, self.reach_fresh, strict=True)]
        self.reach_fresh = [False] * self.width
        self.fresh.zero_()
        frames = self.chains.advance(logits)
        index = self.chains.steps.clamp(max=self.out.shape[1]) - 1
        written = torch.where(live[:, None], frames, self.out[self.decoder.rows, index.clamp(min=0)])
        self.out[self.decoder.rows, index.clamp(min=0)] = written
        return frames

    def _fill(self, row: int, chain: int | None, waiting: deque[int], feed: Feed) -> None:
        """Give `row` the chain's next request, else the next waiting chain's first; else leave it empty."""
        request = feed(chain) if chain is not None else None
        while request is None:
            chain = waiting.popleft() if waiting else None
            if chain is None:
                self.owner[row], self.reach[row] = None, 0
                return
            request = feed(chain)
        self._ensure_room(request)
        self.first[row] = self.decoder.prefill(row, request)
        self.chains.load(row, request)
        self.positions[row] = self.reach[row] = int(request.input_ids.shape[-1])
        self.fresh[row] = self.reach_fresh[row] = True
        self.owner[row] = chain

    def _ensure_room(self, request: Request) -> None:
        if request.length() > self.decoder.length:  # with headroom: each growth re-captures the graph
            limit = max(request.length(), self.limit)
            self.decoder = self.decoder.grown(min(_quantum(request.length() + request.length() // 4), _quantum(limit)))
        if request.max_new > self.out.shape[1]:
            grown = torch.full((self.width, request.max_new, self.out.shape[2]), self.eos, dtype=torch.long,
                               device=self.out.device)
            grown[:, :self.out.shape[1]] = self.out
            self.out = grown
