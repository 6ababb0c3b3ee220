"""Real-time factor of Higgs Audio v2 generation on one GPU: plain `model.generate` vs the static-cache loop.

Builds the full-size model (Higgs Audio v2 3B: Llama-3.2-3B-shaped backbone with DualFFN audio MLPs,
8 codebooks x 1026) from its config with random weights on the GPU, so nothing is downloaded. The audio
head gets a -1e4 bias on the stream-EOS column, so every chain runs exactly `--frames` frames (25 per
second of audio) on both paths. Each chain's prompt is `--prompt-tokens` random text tokens, a reference
clip of `--ref-frames` random codes, and a short user turn, like the engine's prompts.

Reported per batch width B: prefill seconds (all B prompts), decode steps/s, RTF per chain
(wall / audio seconds of one chain), aggregate RTF (wall / audio seconds of all B chains), and peak
GPU memory. Plain generate runs once at batch 1 in the same process for comparison.

    .venv/bin/python bench/gpu_rtf.py [--batches 1,8,32,64] [--frames 500] [--write]
    .venv/bin/python bench/gpu_rtf.py --tiny        # CPU smoke run on a tiny config (what the tests run)
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


def make_request(cfg: Any, index: int, prompt_tokens: int, ref_frames: int, frames: int) -> Any:
    """A chain's prompt: text, a reference clip's delayed codes behind its placeholders, a user turn, audio BOS."""
    import torch

    from higgs_cli import fastgen
    from higgs_cli.engines.higgs import with_stream_markers

    gen = torch.Generator().manual_seed(1000 + index)
    text_top = min(cfg.audio_bos_token_id, cfg.vocab_size) - 16  # ordinary tokens, below every special id used
    codes = torch.randint(0, cfg.audio_stream_bos_id, (cfg.num_codebooks, ref_frames), generator=gen)
    audio = with_stream_markers(codes, cfg.audio_stream_bos_id, cfg.audio_stream_eos_id)
    k = cfg.num_codebooks
    ids = torch.cat([
        torch.randint(0, text_top, (prompt_tokens,), generator=gen),
        torch.full((audio.shape[0] - k + 1,), cfg.audio_token_id), torch.full((k - 1,), cfg.audio_delay_token_id),
        torch.randint(0, text_top, (24,), generator=gen), torch.tensor([cfg.audio_bos_token_id]),
    ])
    return fastgen.Request(ids, audio, seed=index, max_new=frames)


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


def measure(args: argparse.Namespace) -> tuple[list[Row], str]:
    import torch

    device = torch.device("cpu" if args.tiny else args.device)
    dtype = torch.float32 if args.tiny else {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    torch.manual_seed(0)
    model = build_model(TINY_CONFIG if args.tiny else FULL_CONFIG, device, dtype)
    cfg = model.config
    requests = [make_request(cfg, i, args.prompt_tokens, args.ref_frames, args.frames) for i in range(max(args.batches))]
    graphs = device.type == "cuda" and not args.no_graphs
    run_fast(model, requests[:1], device, graphs)  # warm-up: kernels, allocator, cuBLAS handles
    rows = [] if args.no_plain else [run_plain(model, requests[0], device)]
    for b in args.batches:
        try:
            rows.append(run_fast(model, requests[:b], device, graphs))
        except torch.cuda.OutOfMemoryError:
            rows.append(Row("fast", b, float("nan"), float("nan"), args.frames, None, "out of memory"))
            torch.cuda.empty_cache()
    params = sum(p.numel() for p in model.parameters()) / 1e9
    return rows, f"{params:.2f} B parameters, {args.dtype if not args.tiny else 'float32'}"


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


def report(rows: list[Row], model_line: str, args: argparse.Namespace, command: str) -> str:
    from common import md_table

    return "\n".join([
        f"{environment('cpu' if args.tiny else 'cuda')}. Model: {model_line}, random weights. "
        f"{args.frames} frames ({args.frames / FRAME_RATE:.0f} s) per chain; prompt {args.prompt_tokens} text tokens "
        f"+ a {args.ref_frames}-frame reference clip. Sampling: temperature 1.0, top-k 50, top-p 0.95, RAS 7/2.",
        "", "Command:", "", f"    {command}", "", md_table(HEADER, [r.cells() for r in rows]), "",
        "RTF = wall seconds / audio seconds (lower is faster; 1.0 = real time). Aggregate RTF divides by the audio "
        "of all chains in the batch. Prefill is timed separately and also included in the wall time.",
    ])


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
    p.add_argument("--frames", type=int, default=500, help="frames generated per chain, 25 per second (default: 500)")
    p.add_argument("--prompt-tokens", type=int, default=300, help="random text tokens per prompt (default: 300)")
    p.add_argument("--ref-frames", type=int, default=250, help="frames of the reference clip in each prompt (default: 250 = 10 s)")
    p.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    p.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    p.add_argument("--no-graphs", action="store_true", help="step the static-cache loop eagerly")
    p.add_argument("--no-plain", action="store_true", help="skip the plain model.generate baseline")
    p.add_argument("--tiny", action="store_true", help="CPU smoke run on a tiny config (20 frames, batches 1,2)")
    p.add_argument("--write", action="store_true", help=f"write the table into BENCHMARKS.md under '## {SECTION}'")
    args = p.parse_args(argv)
    if args.tiny:
        args.frames, args.prompt_tokens, args.ref_frames, args.batches = min(args.frames, 20), 40, 10, "1,2"
    args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    command = " ".join([".venv/bin/python", "bench/gpu_rtf.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    rows, model_line = measure(args)
    body = report(rows, model_line, args, command)
    print(body)
    if args.write and not args.tiny:
        write_section(body)


if __name__ == "__main__":
    main()
