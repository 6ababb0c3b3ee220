"""Real-time factor of Higgs Audio v2 generation on one GPU: plain `model.generate`, the static-cache loop, chained chunks, the codec.

Builds the full-size model (Higgs Audio v2 3B: Llama-3.2-3B-shaped backbone with DualFFN audio MLPs,
8 codebooks x 1026) from its config with random weights on the GPU, so nothing is downloaded. The audio
head gets a -1e4 bias on the stream-EOS column, so every chain runs exactly `--frames` frames (25 per
second of audio) on all paths. Each chain's prompt is `--prompt-tokens` random text tokens, a reference
clip of `--ref-frames` random codes, and a short user turn, like the engine's prompts.

Reported per batch width B: prefill seconds (all B prompts), decode steps/s, RTF per chain
(wall / audio seconds of one chain), aggregate RTF (wall / audio seconds of all B chains), and peak
GPU memory. Plain generate runs once at batch 1 in the same process for comparison.

Chains (`--chains-batches`, "" skips them): for each width B, B chains of `--chunks` chunks of `--frames`
frames run through `fastgen.stream` (continuous batching, what `higgs generate --batch B` uses), every row
busy. Chunk j > 0 of a chain carries that chain's chunk j - 1 (its generated codes, back in prompt layout)
as audio context after the reference clip, so each prompt is built only once the previous chunk is done.
Reported: wall seconds with every prefill included, prefill seconds, batch decode steps/s, total frames,
aggregate RTF and peak memory.

Codec (`--codec-frames`, 0 skips it): the full-size Higgs audio tokenizer (DAC acoustic decoder, HuBERT
semantic branch, 8 codebooks x 1024 at 25 frames/s, 24 kHz) with random weights in float32, as the engine
loads it; the seconds to decode `--codec-frames` random frames at batch 1, and their RTF.

    .venv/bin/python bench/gpu_rtf.py [--batches 1,8,32,64] [--frames 500] [--chains-batches 8,32] [--chunks 4]
                                      [--codec-frames 500] [--write]
    .venv/bin/python bench/gpu_rtf.py --tiny        # CPU smoke run on tiny configs (what the tests run)
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SECTION = "Higgs on one GPU"
FRAME_RATE = 25  # codec frames per second of audio
EOS_BIAS = -1.0e4  # keeps the stream EOS from ever being sampled, so chains run a fixed length
CHAIN_SEEDS = 10_000  # chained chunks' prompts and seeds start here, apart from the batch rows' (0, 1, ...)

# Higgs Audio v2 generation 3B (bosonai/higgs-audio-v2-generation-3B-base), as transformers' HiggsAudioV2Config.
FULL_CONFIG: dict[str, Any] = {
    "vocab_size": 128256, "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
    "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128, "hidden_act": "silu",
    "rms_norm_eps": 1e-5, "max_position_embeddings": 8192,  # the static cache is sized to the run, not to this
    "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    "num_codebooks": 8, "codebook_size": 1026, "audio_stream_bos_id": 1024, "audio_stream_eos_id": 1025,
    "audio_token_id": 128016, "audio_bos_token_id": 128013, "audio_delay_token_id": 128014,
    "pad_token_id": 128001, "bos_token_id": 128000, "eos_token_id": 128009, "tie_word_embeddings": False,
}
TINY_CONFIG: dict[str, Any] = {
    **FULL_CONFIG, "vocab_size": 300, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "max_position_embeddings": 1024,
    "rope_parameters": {**FULL_CONFIG["rope_parameters"], "original_max_position_embeddings": 256},
    "num_codebooks": 2, "codebook_size": 66, "audio_stream_bos_id": 64, "audio_stream_eos_id": 65,
    "audio_token_id": 290, "audio_bos_token_id": 291, "audio_delay_token_id": 292, "pad_token_id": 293,
    "bos_token_id": 294, "eos_token_id": 295,
}

# The released tokenizer (bosonai/higgs-audio-v2-tokenizer): 8 codebooks x 1024 at 25 frames/s, 24 kHz. transformers'
# HiggsAudioV2TokenizerConfig defaults are not it: they keep XCodec's DAC ratios [8, 5, 4, 2] (hop 320, 75 frames/s)
# and a 4 kbps top bandwidth (5 quantizers), so the hop and the bandwidths are set here; the rest are its defaults.
FULL_CODEC: dict[str, Any] = {
    "acoustic_model_config": {"downsampling_ratios": [8, 5, 4, 2, 3], "upsampling_ratios": [8, 5, 4, 2, 3]},
    "target_bandwidths": [0.5, 1, 1.5, 2],  # 2 kbps / (25 frames/s x 10 bits) = 8 quantizers
}
TINY_CODEC: dict[str, Any] = {  # the shape of tests/higgs_tiny.py's codec: hop 960, a few channels, 2 codebooks of 64
    "acoustic_model_config": {"encoder_hidden_size": 4, "downsampling_ratios": [8, 5, 4, 2, 3], "decoder_hidden_size": 32,
                              "upsampling_ratios": [8, 5, 4, 2, 3], "hidden_size": 8},
    "semantic_model_config": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1, "intermediate_size": 32,
                              "conv_dim": [8] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2},
    "codebook_size": TINY_CONFIG["codebook_size"] - 2, "codebook_dim": 8, "target_bandwidths": [0.3],
}


@dataclass
class Row:
    method: str
    batch: int
    prefill_s: float
    total_s: float
    frames: int
    peak_gib: float | None
    note: str = ""

    def cells(self) -> list[object]:
        audio_s = self.frames / FRAME_RATE
        decode_s = max(self.total_s - self.prefill_s, 1e-9)
        return [self.method, self.batch, f"{self.prefill_s:.2f}", f"{(self.frames - 1) / decode_s:.1f}",
                f"{self.total_s / audio_s:.3f}", f"{self.total_s / (audio_s * self.batch):.4f}",
                "-" if self.peak_gib is None else f"{self.peak_gib:.1f}", self.note]


HEADER = ["method", "batch", "prefill s", "steps/s", "RTF per chain", "aggregate RTF", "peak GiB", "note"]


@dataclass
class ChainRow:
    """Chains through `fastgen.stream`, one per row: `chunks` chunks of `frames` frames each, prefills in the wall time."""

    chains: int
    chunks: int
    frames: int
    wall_s: float
    prefill_s: float
    steps: int
    total_frames: int
    peak_gib: float | None
    note: str = ""

    def cells(self) -> list[object]:
        decode_s = max(self.wall_s - self.prefill_s, 1e-9)
        return ["fast chains", self.chains, self.chains, f"{self.chunks} x {self.frames}", f"{self.wall_s:.2f}",
                f"{self.prefill_s:.2f}", f"{self.steps / decode_s:.1f}", self.total_frames,
                f"{self.wall_s * FRAME_RATE / max(self.total_frames, 1):.4f}",
                "-" if self.peak_gib is None else f"{self.peak_gib:.1f}", self.note]


CHAIN_HEADER = ["method", "chains", "batch", "chunks x frames", "wall s", "prefill s", "steps/s", "total frames",
                "aggregate RTF", "peak GiB", "note"]


@dataclass
class CodecRow:
    frames: int
    decode_s: float
    peak_gib: float | None
    note: str = ""

    def cells(self) -> list[object]:
        audio_s = self.frames / FRAME_RATE
        return ["codec decode", 1, self.frames, f"{audio_s:.1f}", f"{self.decode_s:.3f}", f"{self.decode_s / audio_s:.4f}",
                "-" if self.peak_gib is None else f"{self.peak_gib:.1f}", self.note]


CODEC_HEADER = ["method", "batch", "frames", "audio s", "decode s", "RTF", "peak GiB", "note"]


@dataclass
class Results:
    rows: list[Row]
    chain_rows: list[ChainRow]
    codec_rows: list[CodecRow]
    model_line: str


# --- model and prompts ------------------------------------------------------------------------------
def build_model(config: dict[str, Any], device: Any, dtype: Any) -> Any:
    """The model from its config with random weights, made directly on `device` in `dtype`, EOS suppressed."""
    import torch
    from transformers import HiggsAudioV2Config, HiggsAudioV2ForConditionalGeneration

    cfg = HiggsAudioV2Config(**config)
    cfg._attn_implementation = "sdpa"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = HiggsAudioV2ForConditionalGeneration(cfg).eval()
    finally:
        torch.set_default_dtype(previous)
    head = model.audio_lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True, device=device, dtype=dtype)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[cfg.audio_stream_eos_id::cfg.codebook_size] = EOS_BIAS
    model.audio_lm_head = biased
    model.generation_config.ras_win_len, model.generation_config.ras_win_max_num_repeat = 7, 2
    return model


def make_request(cfg: Any, index: int, prompt_tokens: int, ref_frames: int, frames: int, context: Any | None = None) -> Any:
    """A chain's prompt: text, a reference clip's delayed codes behind its placeholders, a user turn, audio BOS.

    With `context` (K, T) codes (a previous chunk's), a user turn and those codes as the answer follow the clip,
    as in the engine's prompts with one context chunk.
    """
    import torch

    from higgs_cli import fastgen

    gen = torch.Generator().manual_seed(1000 + index)
    text_top = min(cfg.audio_bos_token_id, cfg.vocab_size) - 16  # ordinary tokens, below every special id used
    clip = torch.randint(0, cfg.audio_stream_bos_id, (cfg.num_codebooks, ref_frames), generator=gen)
    blocks = [delayed(cfg, clip)]
    pieces = [torch.randint(0, text_top, (prompt_tokens,), generator=gen), placeholders(cfg, blocks[0])]
    if context is not None:
        blocks.append(delayed(cfg, context))
        pieces += [torch.randint(0, text_top, (24,), generator=gen), placeholders(cfg, blocks[1])]
    pieces += [torch.randint(0, text_top, (24,), generator=gen), torch.tensor([cfg.audio_bos_token_id])]
    return fastgen.Request(torch.cat(pieces), torch.cat(blocks), seed=index, max_new=frames)


def delayed(cfg: Any, codes: Any) -> Any:
    """(K, T) codes -> the (T + K + 1, K) delay-pattern frames a prompt carries."""
    from higgs_cli.engines.higgs import with_stream_markers

    return with_stream_markers(codes, cfg.audio_stream_bos_id, cfg.audio_stream_eos_id)


def placeholders(cfg: Any, frames: Any) -> Any:
    """The text ids standing for a block of delayed frames: one audio token per frame, the last K - 1 as delay tokens."""
    import torch

    k = cfg.num_codebooks
    return torch.cat([torch.full((frames.shape[0] - k + 1,), cfg.audio_token_id),
                      torch.full((k - 1,), cfg.audio_delay_token_id)])


def sampling_settings() -> Any:
    from higgs_cli.options import HiggsSettings

    return HiggsSettings()  # the CLI defaults: temperature 1.0, top-k 50, top-p 0.95, RAS 7/2


# --- measurements -----------------------------------------------------------------------------------------
def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak(device: Any) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def run_plain(model: Any, request: Any, device: Any) -> Row:
    import torch

    from higgs_cli.engines.higgs import sampling_config

    gc = sampling_config(model.generation_config, sampling_settings(), request.max_new)
    ids = request.input_ids.to(device)[None]
    audio = request.audio_ids.to(device)[None]
    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "audio_input_ids": audio,
              "audio_input_ids_mask": torch.ones(audio.shape[:2], dtype=torch.bool, device=device)}
    reset_peak(device)
    with torch.inference_mode():
        sync(device)
        start = time.perf_counter()
        model(**kwargs, use_cache=True, logits_to_keep=1)  # a prefill alone, for the prefill column
        sync(device)
        prefill = time.perf_counter() - start
        torch.manual_seed(request.seed)
        start = time.perf_counter()
        out = model.generate(**kwargs, generation_config=gc)
        sync(device)
        total = time.perf_counter() - start
    frames = out.shape[1] - audio.shape[1]
    return Row("plain generate", 1, prefill, total, frames, peak(device))


def run_fast(model: Any, requests: list[Any], device: Any, graphs: bool) -> Row:
    import torch

    from higgs_cli import fastgen
    from higgs_cli.engines.higgs import sampling_config

    sampling = fastgen.Sampling.from_config(sampling_config(model.generation_config, sampling_settings(), 1))
    reset_peak(device)
    start = time.perf_counter()
    decoder = fastgen.StaticDecoder(model, len(requests), fastgen.cache_length(requests), graphs=graphs)
    sync(device)
    capture = time.perf_counter() - start
    with torch.inference_mode():  # prefill alone, for the prefill column (generate() prefills again)
        start = time.perf_counter()
        for i, r in enumerate(requests):
            decoder.prefill(i, r)
        sync(device)
        prefill = time.perf_counter() - start
    start = time.perf_counter()
    out = fastgen.generate(model, requests, sampling, decoder=decoder)
    sync(device)
    total = time.perf_counter() - start
    frames = min(len(o) for o in out)
    note = f"graph capture {capture:.1f} s" if graphs else "eager"
    return Row("fast, CUDA graphs" if graphs else "fast", len(requests), prefill, total, frames, peak(device), note)


class ChainFeed:
    """`fastgen.stream`'s feed: `chunks` requests per chain; chunk j > 0 carries the chain's chunk j - 1 as context."""

    def __init__(self, cfg: Any, args: argparse.Namespace):
        self.cfg, self.args = cfg, args
        self.issued: dict[int, int] = {}
        self.previous: dict[int, Any] = {}
        self.frames = 0

    def __call__(self, chain: int) -> Any | None:
        j = self.issued.get(chain, 0)
        if j == self.args.chunks:
            return None
        self.issued[chain] = j + 1
        return self.request(chain, j, self.previous.get(chain))

    def request(self, chain: int, j: int, context: Any | None) -> Any:
        a = self.args
        return make_request(self.cfg, CHAIN_SEEDS + chain * a.chunks + j, a.prompt_tokens, a.ref_frames, a.frames, context)

    def finished(self, chain: int, generated: Any) -> None:
        """Keep a finished chunk's codes for the chain's next prompt (stream asks for it only after this returns)."""
        from higgs_cli.engines.higgs import extract_codes

        cfg = self.cfg
        # The EOS is suppressed, so there is no EOS row: extract_codes keeps every frame after the BOS row and
        # returns the frames - K columns all K codebooks reached (the last K - 1 rows lack the delayed codebooks).
        codes = extract_codes(generated, cfg.audio_stream_bos_id, cfg.audio_stream_eos_id)
        if codes.shape[1] != len(generated) - cfg.num_codebooks:  # the chains table states this context length
            raise RuntimeError(f"chain {chain}: {len(generated)} frames gave {codes.shape[1]} codes, not "
                               f"{len(generated) - cfg.num_codebooks}: a row of all stream BOS or EOS was sampled")
        self.previous[chain] = codes
        self.frames += len(generated)

    def longest(self) -> Any:
        """The longest request (one with a whole chunk as context): the cache is sized to it so it never grows mid-run."""
        k, first = self.cfg.num_codebooks, self.request(0, 0, None)
        return first if self.args.chunks == 1 else self.request(0, 1, first.audio_ids.new_zeros((k, self.args.frames - k)))


def timed_decoder(model: Any, width: int, length: int, graphs: bool) -> Any:
    """A StaticDecoder that counts batch steps and times its prefills, which stream() interleaves with decoding."""
    from higgs_cli import fastgen

    class TimedDecoder(fastgen.StaticDecoder):
        steps, prefill_s = 0, 0.0

        def prefill(self, slot: int, request: Any) -> Any:
            sync(self.device)  # stream() refills rows right after a host sync, so this one costs nothing extra
            start = time.perf_counter()
            logits = super().prefill(slot, request)
            sync(self.device)
            self.prefill_s += time.perf_counter() - start
            return logits

        def step(self, frames: Any, positions: Any, reach: int | None = None) -> Any:
            self.steps += 1
            return super().step(frames, positions, reach)

    return TimedDecoder(model, width, length, graphs=graphs)


def run_chains(model: Any, args: argparse.Namespace, width: int, graphs: bool) -> ChainRow:
    from higgs_cli import fastgen
    from higgs_cli.engines.higgs import sampling_config

    sampling = fastgen.Sampling.from_config(sampling_config(model.generation_config, sampling_settings(), 1))
    feed = ChainFeed(model.config, args)
    reset_peak(model.device)
    start = time.perf_counter()
    decoder = timed_decoder(model, width, fastgen.cache_length([feed.longest()]), graphs)
    sync(model.device)
    capture = time.perf_counter() - start
    start = time.perf_counter()
    for chain, generated in fastgen.stream(model, width, feed, sampling, width=width, decoder=decoder):
        feed.finished(chain, generated)
    sync(model.device)
    wall = time.perf_counter() - start
    note = (f"graph capture {capture:.1f} s; " if graphs else "eager; ") + f"{decoder.steps} steps"
    return ChainRow(width, args.chunks, args.frames, wall, decoder.prefill_s, decoder.steps, feed.frames, peak(model.device), note)


def build_codec(config: dict[str, Any], device: Any) -> Any:
    """The Higgs audio tokenizer from its config with random weights, float32 on `device` (as the engine loads it)."""
    import torch
    from transformers import HiggsAudioV2TokenizerConfig, HiggsAudioV2TokenizerModel

    with torch.device(device):
        return HiggsAudioV2TokenizerModel(HiggsAudioV2TokenizerConfig(**config)).eval()


def run_codec(codec: Any, frames: int, device: Any, repeats: int = 3) -> CodecRow:
    """Median seconds to decode `frames` random frames at batch 1, after one untimed decode of the same size."""
    import statistics

    import torch

    cfg = codec.config
    codes = torch.randint(0, cfg.codebook_size, (1, cfg.num_quantizers, frames), device=device)
    reset_peak(device)
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            sync(device)
            start = time.perf_counter()
            wav = codec.decode(codes).audio_values
            sync(device)
            times.append(time.perf_counter() - start)
    samples = wav.shape[-1]
    params = sum(p.numel() for p in codec.parameters()) / 1e6
    note = f"{params:.3g} M parameters, float32; {samples} samples at {cfg.sample_rate} Hz; median of {repeats}"
    return CodecRow(frames, statistics.median(times[1:]), peak(device), note)


def measure_lm(model: Any, args: argparse.Namespace, device: Any, graphs: bool) -> list[Row]:
    import torch

    cfg = model.config
    requests = [make_request(cfg, i, args.prompt_tokens, args.ref_frames, args.frames) for i in range(max(args.batches))]
    run_fast(model, requests[:1], device, graphs)  # warm-up: kernels, allocator, cuBLAS handles
    rows = [] if args.no_plain else [run_plain(model, requests[0], device)]
    for b in args.batches:
        try:
            rows.append(run_fast(model, requests[:b], device, graphs))
        except torch.cuda.OutOfMemoryError:
            rows.append(Row("fast", b, float("nan"), float("nan"), args.frames, None, "out of memory"))
            torch.cuda.empty_cache()
    return rows


def measure_chains(model: Any, args: argparse.Namespace, graphs: bool) -> list[ChainRow]:
    import torch

    rows = []
    for width in args.chains_batches:
        try:
            rows.append(run_chains(model, args, width, graphs))
        except torch.cuda.OutOfMemoryError:
            nan = float("nan")
            rows.append(ChainRow(width, args.chunks, args.frames, nan, nan, 0, 0, None, "out of memory"))
            torch.cuda.empty_cache()
    return rows


def measure(args: argparse.Namespace) -> Results:
    import torch

    device = torch.device("cpu" if args.tiny else args.device)
    dtype = torch.float32 if args.tiny else {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    torch.manual_seed(0)
    model = build_model(TINY_CONFIG if args.tiny else FULL_CONFIG, device, dtype)
    graphs = device.type == "cuda" and not args.no_graphs
    rows = measure_lm(model, args, device, graphs)
    chain_rows = measure_chains(model, args, graphs)
    codec_rows = []
    if args.codec_frames:  # the language model stays loaded, as it does next to the codec in the engine
        codec = build_codec(TINY_CODEC if args.tiny else FULL_CODEC, device)
        codec_rows.append(run_codec(codec, args.codec_frames, device))
    params = sum(p.numel() for p in model.parameters()) / 1e9
    return Results(rows, chain_rows, codec_rows, f"{params:.2f} B parameters, {args.dtype if not args.tiny else 'float32'}")


def environment(device_type: str) -> str:
    import torch
    import transformers

    gpu, driver = "CPU (tiny smoke run)", "-"
    if device_type == "cuda":
        gpu = torch.cuda.get_device_name()
        try:
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            driver = "unknown"
    cuda = torch.version.cuda or "-"
    return f"GPU: {gpu}; driver {driver}; CUDA {cuda}; torch {torch.__version__}; transformers {transformers.__version__}"


def report(results: Results, args: argparse.Namespace, command: str) -> str:
    from common import md_table

    lines = [
        f"{environment('cpu' if args.tiny else 'cuda')}. Model: {results.model_line}, random weights. "
        f"{args.frames} frames ({args.frames / FRAME_RATE:.0f} s) per chain; prompt {args.prompt_tokens} text tokens "
        f"+ a {args.ref_frames}-frame reference clip. Sampling: temperature 1.0, top-k 50, top-p 0.95, RAS 7/2.",
        "", "Command:", "", f"    {command}", "", md_table(HEADER, [r.cells() for r in results.rows]), "",
        "RTF = wall seconds / audio seconds (lower is faster; 1.0 = real time). Aggregate RTF divides by the audio "
        "of all chains in the batch. Prefill is timed separately and also included in the wall time.",
    ]
    if results.chain_rows:
        lines += ["", md_table(CHAIN_HEADER, [r.cells() for r in results.chain_rows]), "", chains_text(args)]
    if results.codec_rows:
        lines += ["", md_table(CODEC_HEADER, [r.cells() for r in results.codec_rows]), "", codec_text(args)]
    return "\n".join(lines)


def chains_text(args: argparse.Namespace) -> str:
    k = (TINY_CONFIG if args.tiny else FULL_CONFIG)["num_codebooks"]
    return (f"Chains: `fastgen.stream` (continuous batching) with as many chains as rows, each chain {args.chunks} chunks "
            f"of {args.frames} frames; every chunk after a chain's first carries that chain's previous chunk "
            f"({args.frames - k} codes) as context after the reference clip, so its prompt is built and prefilled "
            "only once the previous chunk is done. Wall time includes every prefill and the code extraction between chunks "
            "(not the CUDA graph capture, shown in the note). Steps/s = batch decode steps / (wall - prefill); on CUDA "
            "the loop looks for finished rows only every 16 steps, so the steps include those a finished row waits "
            "there. Aggregate RTF = wall / audio seconds of all chunks of all chains.")


def codec_text(args: argparse.Namespace) -> str:
    size = "a tiny codec (hop 960, 2 codebooks)" if args.tiny else "the full-size Higgs audio tokenizer (8 codebooks x 1024, 25 frames/s, 24 kHz)"
    return (f"Codec: {size} with random weights in float32 decodes {args.codec_frames} random frames at batch 1 "
            "(`codec.decode`, the call the engine makes per chunk); RTF = decode seconds / audio seconds. "
            "Peak memory includes the language model's weights, which stay loaded.")


def write_section(body: str) -> None:
    """Replace or append `## Higgs on one GPU` in BENCHMARKS.md, leaving everything else as it is."""
    from common import BENCHMARKS

    text = BENCHMARKS.read_text(encoding="utf-8")
    section = f"## {SECTION}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    BENCHMARKS.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="1,8,32,64", help="comma-separated batch widths (default: 1,8,32,64)")
    p.add_argument("--frames", type=int, default=500, help="frames generated per chain (per chunk for chains), 25 per second (default: 500)")
    p.add_argument("--prompt-tokens", type=int, default=300, help="random text tokens per prompt (default: 300)")
    p.add_argument("--ref-frames", type=int, default=250, help="frames of the reference clip in each prompt (default: 250 = 10 s)")
    p.add_argument("--chains-batches", default="8,32", help="batch widths for the chains table, one chain per row; '' skips it (default: 8,32)")
    p.add_argument("--chunks", type=int, default=4, help="chunks per chain in the chains table (default: 4)")
    p.add_argument("--codec-frames", type=int, default=500, help="frames the codec decodes at batch 1; 0 skips it (default: 500 = 20 s)")
    p.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    p.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    p.add_argument("--no-graphs", action="store_true", help="step the static-cache loop eagerly")
    p.add_argument("--no-plain", action="store_true", help="skip the plain model.generate baseline")
    p.add_argument("--tiny", action="store_true", help="CPU smoke run on tiny configs (20 frames, batches 1,2, 2 chains of 2 chunks)")
    p.add_argument("--write", action="store_true", help=f"write the tables into BENCHMARKS.md under '## {SECTION}'")
    args = p.parse_args(argv)
    if args.tiny:
        args.frames, args.prompt_tokens, args.ref_frames, args.batches = min(args.frames, 20), 40, 10, "1,2"
        args.chains_batches, args.chunks, args.codec_frames = "2", min(args.chunks, 2), min(args.codec_frames, 50)
    args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    args.chains_batches = [int(b) for b in args.chains_batches.split(",") if b.strip()]
    k = (TINY_CONFIG if args.tiny else FULL_CONFIG)["num_codebooks"]
    if args.chains_batches and (args.chunks < 1 or args.frames <= k):
        p.error(f"chains need --chunks >= 1 and --frames > {k} (the codebooks' delay), or --chains-batches ''")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    command = " ".join([".venv/bin/python", "bench/gpu_rtf.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    body = report(measure(args), args, command)
    print(body)
    if args.write and not args.tiny:
        write_section(body)


if __name__ == "__main__":
    main()
