"""`higgs model check`: validate a Higgs Audio v2 checkpoint pair, then render and decode about two seconds of speech.

Checks, in order: where the weights are and their layout; the LM and codec config fields the engine relies on;
the special tokens and their ids; the codebooks (LM heads and embeddings against the codec's quantizers); the
dtype; the memory the weights and a KV cache of `--context-limit` positions need against what the device has
free. Then one short chunk is generated and decoded with timings. Every problem is one line naming the fix.
Nothing is downloaded. torch/transformers are imported inside the functions.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import HiggsError
from .options import DEFAULT_CODEC, DEFAULT_MODEL, HiggsSettings

CHECK_TEXT = "Hello, this is a short check of the Higgs engine."
CHECK_SECONDS = 2.0
FRAME_RATE = 25
SPECIAL = {"<|AUDIO_OUT|>": "audio_token_id", "<|audio_out_bos|>": "audio_bos_token_id",
           "<|reserved_special_token_6|>": "audio_delay_token_id"}
TEMPLATE_TOKENS = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|audio_eos|>",
                   "<|scene_desc_start|>", "<|scene_desc_end|>")


@dataclass
class CheckReport:
    """What `higgs model check` found: facts (`ok`), problems (each naming its fix) and timings in seconds."""

    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "ok": self.ok, "problems": self.problems, "timings": self.timings}


def check(settings: HiggsSettings, say: Callable[[str], None] | None = None, seconds: float = CHECK_SECONDS) -> CheckReport:
    """Run every check on the checkpoints `settings` name; render `seconds` of speech only when the static checks pass."""
    report = CheckReport()
    note = say or (lambda line: None)
    dirs = _locate(settings, report)
    if dirs is None:
        return report
    _check_configs(dirs[0], dirs[1], report)
    if not report.problems:
        _check_room(dirs, settings, report)
    if report.problems:
        return report
    note("loading the model...")
    engine = _load(settings, report)
    if engine is None:
        return report
    _check_loaded(engine.loaded, report)
    _check_memory(engine.loaded, settings, report)
    if not report.problems:
        note(f"rendering up to {seconds:g} s of speech...")
        _render(engine, report, seconds)
    return report


# --- locations and configs (no torch) ------------------------------------------------------------------
def _locate(settings: HiggsSettings, report: CheckReport) -> tuple[Path, Path] | None:
    from . import model as weights

    found = []
    for spec, default, env, rev, want in ((settings.model, DEFAULT_MODEL, "HIGGS_MODEL", settings.revision, "lm"),
                                          (settings.codec, DEFAULT_CODEC, "HIGGS_CODEC", settings.codec_revision, "codec")):
        spec = weights.model_spec(spec, default, env)
        try:
            directory = weights.locate(spec, rev, download=False)
            kind = weights.layout(directory)
        except HiggsError as e:
            report.problems.append(str(e))
            continue
        if kind == f"original-{want}":
            report.ok.append(f"{spec}: Boson's original layout; converted once on first use (or run `higgs model convert`)")
        elif kind != want:
            option = "--codec" if want == "lm" else "--model"
            report.problems.append(f"{spec} holds a {kind.removeprefix('original-')} checkpoint, not a {want}; pass it as {option}")
            continue
        else:
            report.ok.append(f"{spec}: transformers layout ({directory})")
        try:
            found.append(weights.ready_dir(spec, rev, want))
        except HiggsError as e:
            report.problems.append(str(e))
    return (found[0], found[1]) if len(found) == 2 and not report.problems else None


def _check_configs(model_dir: Path, codec_dir: Path, report: CheckReport) -> None:
    import json

    lm = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    codec = json.loads((codec_dir / "config.json").read_text(encoding="utf-8"))
    needed = ("num_codebooks", "codebook_size", "audio_stream_bos_id", "audio_stream_eos_id", *SPECIAL.values())
    missing = [key for key in needed if lm.get(key) is None]
    if missing:
        report.problems.append(f"{model_dir}/config.json lacks {', '.join(missing)}; re-download the model or re-convert it")
        return
    k, v = lm["num_codebooks"], lm["codebook_size"]
    if (lm["audio_stream_bos_id"], lm["audio_stream_eos_id"]) != (v - 2, v - 1):
        report.problems.append(f"{model_dir}/config.json: stream BOS/EOS {lm['audio_stream_bos_id']}/{lm['audio_stream_eos_id']} are not "
                               f"the last two of {v} codes; re-download the model or re-convert it")
    codes = codec.get("codebook_size", 1024)
    if codes + 2 != v:
        report.problems.append(f"the codec has {codes} codes per codebook but the model expects {v - 2}; pass the codec made for "
                               f"this model (--codec)")
    report.ok.append(f"config: {k} codebooks of {v - 2} codes, stream BOS/EOS {v - 2}/{v - 1}, "
                     f"max_position_embeddings {lm.get('max_position_embeddings')} (the engine uses --context-limit instead)")


# --- the loaded model ----------------------------------------------------------------------------------
def _load(settings: HiggsSettings, report: CheckReport) -> Any | None:
    import warnings

    from .engines.higgs import HiggsEngine

    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the CPU warning: the device is reported below
            engine = HiggsEngine(settings)
    except HiggsError as e:
        report.problems.append(str(e))
        return None
    except RuntimeError as e:  # torch.cuda.OutOfMemoryError is one
        if "out of memory" not in str(e).lower():
            raise
        report.problems.append(f"out of memory while loading on {settings.device}; free the GPU or use a larger one")
        return None
    report.timings["load"] = round(time.perf_counter() - start, 2)
    return engine


def _check_loaded(m: Any, report: CheckReport) -> None:
    config, tokenizer, codec = m.model.config, m.processor.tokenizer, m.codec
    for token, key in SPECIAL.items():
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        if ids != [getattr(config, key)]:
            report.problems.append(f"special token {token} tokenizes to {ids}, but config {key} is {getattr(config, key)}; "
                                   f"the tokenizer and model do not belong together: re-download or re-convert the model")
    for token in TEMPLATE_TOKENS:
        if len(tokenizer(token, add_special_tokens=False)["input_ids"]) != 1:
            report.problems.append(f"the tokenizer splits {token} into pieces; the prompt template needs it as one token: "
                                   f"re-download the model's tokenizer files")
    k, v = config.num_codebooks, config.codebook_size
    embed = m.model.model.embed_audio_tokens.embed_audio_tokens.weight.shape[0]
    head = m.model.audio_lm_head.weight.shape[0]
    if embed != k * v or head != k * v:
        report.problems.append(f"audio embeddings ({embed} rows) and head ({head}) do not hold {k} x {v} codes; re-convert the model")
    quantizers = codec.config.num_quantizers
    if quantizers != k:
        report.problems.append(f"the codec has {quantizers} quantizers but the model has {k} codebooks; pass the codec made for "
                               f"this model (--codec), or re-convert the codec")
    if not report.problems:
        report.ok.append(f"tokens and codebooks: {len(SPECIAL) + len(TEMPLATE_TOKENS)} special tokens, {k} codebooks, "
                         f"{quantizers} codec quantizers at {codec.config.sample_rate} Hz, hop {codec.config.hop_length}")
    report.ok.append(f"device {m.device}, dtype {str(m.dtype).removeprefix('torch.')}")


def _check_room(dirs: tuple[Path, Path], settings: HiggsSettings, report: CheckReport) -> None:
    """Before loading: the weights at the dtype they will load in (from the safetensors headers) against free memory."""
    from . import model as weights

    try:
        device, dtype = weights.resolve_device(settings.device, settings.dtype)
    except HiggsError as e:
        report.problems.append(str(e))
        return
    needed = sum(_numel(path) for d in dirs for path in d.glob("*.safetensors")) * dtype.itemsize
    free = _free_bytes(device)
    if free is not None and needed > free:
        report.problems.append(f"the weights need {_gib(needed)} in {str(dtype).removeprefix('torch.')} but {device} has {_gib(free)} "
                               f"free; free the device, or use --device cuda (bfloat16 halves it)")


def _numel(path: Path) -> int:
    """Parameters in a safetensors file, from its JSON header (no tensor is read)."""
    import json
    import struct

    with path.open("rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    total = 0
    for name, entry in header.items():
        if name != "__metadata__":
            count = 1
            for n in entry["shape"]:
                count *= n
            total += count
    return total


def _check_memory(m: Any, settings: HiggsSettings, report: CheckReport) -> None:
    """Weights as loaded plus one KV cache row of --context-limit positions, against what the device has free now."""
    config = m.model.config
    weights = sum(p.numel() * p.element_size() for p in m.model.parameters())
    weights += sum(p.numel() * p.element_size() for p in m.codec.parameters())
    element = next(m.model.parameters()).element_size()
    kv = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * element * settings.context_limit
    free = _free_bytes(m.device)
    line = (f"memory: weights {_gib(weights)} loaded, KV cache {_gib(kv)} per row at --context-limit {settings.context_limit}"
            + (f", {_gib(free)} free on {m.device}" if free is not None else ""))
    report.ok.append(line)
    if free is not None and kv * settings.batch > free:
        report.problems.append(f"--batch {settings.batch} needs {_gib(kv * settings.batch)} of KV cache but {m.device} has {_gib(free)} "
                               f"free; lower --batch or --context-limit, or free the GPU")


def _free_bytes(device: Any) -> int | None:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**27 else f"{n / 2**20:.1f} MiB"


# --- render and decode -----------------------------------------------------------------------------------
def _render(engine: Any, report: CheckReport, seconds: float) -> None:
    import numpy as np

    from .engines import ChunkRequest
    from .voices import Voice

    frames = max(8, int(seconds * FRAME_RATE))
    engine.settings = replace(engine.settings, max_new_tokens=frames)
    request = ChunkRequest(0, "CHECK", CHECK_TEXT, Voice(name="check", source="auto"), seed=1)
    start = time.perf_counter()
    try:
        result = engine.synthesize(request)
    except HiggsError as e:
        report.problems.append(f"rendering failed: {e}")
        return
    total = time.perf_counter() - start
    codes = result.state["codes"]
    start = time.perf_counter()
    audio = engine.decode_codes(codes)
    decode = time.perf_counter() - start
    seconds = len(result.audio) / engine.sample_rate
    report.timings |= {"render": round(total, 2), "decode": round(decode, 2)}  # render = generate + decode
    if not np.isfinite(result.audio).all() or not np.abs(result.audio).max() > 0:
        report.problems.append("the rendered audio is silent or not finite; re-download the weights (a damaged file?)")
    elif len(audio) != codes.shape[1] * engine.loaded.hop_length:
        report.problems.append(f"decoding {codes.shape[1]} frames gave {len(audio)} samples; pass the codec made for this model")
    else:
        report.ok.append(f"rendered {codes.shape[1]} frames ({seconds:.2f} s) in {total:.2f} s "
                         f"(real-time factor {total / max(seconds, 1e-9):.2f}; decode {decode:.2f} s)")
