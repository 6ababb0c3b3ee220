"""Higgs Audio v2 weights: locate (hub cache or local dir), convert Boson's original layout, load once per process.

Two checkpoint layouts are understood:
  transformers  LM `config.json` with model_type `higgs_audio_v2` (+ safetensors, tokenizer files);
                codec `config.json` with model_type `higgs_audio_v2_tokenizer` (+ safetensors).
  original      Boson's release: LM model_type `higgs_audio` (text_config + audio_* keys, safetensors
                with `audio_decoder_proj.*` heads); codec `config.json` + `model.pth` with weight-norm.
Original directories are converted once (conversion.py: `higgs model convert SRC DST`, or automatically
into `converted_cache_dir()`); hub downloads fetch only what loading reads (downloads.py). Nothing here
trusts remote code.
torch/transformers are imported inside functions so that importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EngineUnavailable, RenderError, UsageError
from .options import DEFAULT_CODEC, DEFAULT_MODEL

log = logging.getLogger(__name__)

LM_TYPE, CODEC_TYPE, ORIGINAL_LM_TYPE = "higgs_audio_v2", "higgs_audio_v2_tokenizer", "higgs_audio"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model")
AUDIO_DELAY_TOKEN = "<|reserved_special_token_6|>"
CPU_WARNING = "running Higgs Audio v2 on the CPU: expect about 50x slower than real time (use a CUDA GPU)"
_LOADED: dict[tuple, Loaded] = {}


# --- locations -----------------------------------------------------------------------------------
def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def converted_cache_dir() -> Path:
    """Where auto-converted original-layout checkpoints live ($HIGGS_CACHE_DIR, else the user cache)."""
    if os.environ.get("HIGGS_CACHE_DIR"):
        return Path(os.environ["HIGGS_CACHE_DIR"]) / "converted"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "higgs" / "converted"


def model_spec(spec: str, default: str, env: str) -> str:
    """The model location to use: an explicit setting, else $HIGGS_MODEL / $HIGGS_CODEC, else the default."""
    if spec == default and os.environ.get(env):
        return os.environ[env]
    return spec


def is_hub_id(spec: str) -> bool:
    return re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", spec) is not None and not Path(spec).expanduser().exists()


def cached_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The local snapshot directory of a hub repo when its config is in the HF cache; no network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    return Path(found).parent if isinstance(found, str) else None


def locate(spec: str, revision: str | None = None, *, download: bool = True) -> Path:
    """A local directory for a hub id or path: the cache first, then (online only) a download."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if not is_hub_id(spec):
        raise UsageError(f"model directory {spec} not found; give an existing directory or a hub id like {DEFAULT_MODEL}")
    snapshot = cached_snapshot(spec, revision)
    if snapshot is not None and _complete(snapshot):
        return snapshot
    if is_offline() or not download:
        raise EngineUnavailable(f"{spec} is not in the local Hugging Face cache; run `higgs model download` "
                                f"(with network access) or pass --model/--codec DIR")
    return download_repo(spec, revision, lambda line: log.warning("%s (first use; `higgs model download` prefetches)", line))


def _complete(directory: Path) -> bool:
    return any(directory.glob("*.safetensors")) or (directory / "model.pth").exists()


def download_repo(repo_id: str, revision: str | None = None, say: Callable[[str], None] | None = None) -> Path:
    """Only the files the loaders read (downloads.py); a large download says its size first."""
    from .downloads import fetch

    try:
        return fetch(repo_id, revision, say)
    except Exception as e:  # network, auth, unknown repo: all reported as one line
        raise EngineUnavailable(f"cannot download {repo_id} ({e.__class__.__name__}: {str(e).splitlines()[0][:120]}); "
                                f"check the id and network, or pass --model/--codec DIR") from e


# --- layouts -------------------------------------------------------------------------------------
def _read_config(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def layout(directory: Path) -> str:
    """'lm' or 'codec' (transformers layout), 'original-lm' or 'original-codec'; UsageError otherwise."""
    config = _read_config(directory)
    kind = config.get("model_type")
    if kind == LM_TYPE and _complete(directory):
        return "lm"
    if kind == CODEC_TYPE and _complete(directory):
        return "codec"
    if kind == ORIGINAL_LM_TYPE and any(directory.glob("*.safetensors")):
        return "original-lm"
    if (directory / "model.pth").exists() and {"ratios", "n_q"} & set(config):
        return "original-codec"
    raise UsageError(f"{directory} is not a Higgs Audio v2 checkpoint (need config.json with model_type "
                     f"{LM_TYPE} / {CODEC_TYPE}, or Boson's original layout); point --model/--codec at one")


def ready_dir(spec: str, revision: str | None, want: str) -> Path:
    """A transformers-layout directory of kind `want` ('lm' or 'codec'), converting an original one once."""
    directory = locate(spec, revision)
    kind = layout(directory)
    if kind == f"original-{want}":
        return auto_convert(directory)
    if kind != want:
        other = "--codec" if want == "lm" else "--model"
        raise UsageError(f"{spec} holds a {kind.replace('original-', '')} checkpoint, not a {want}; did you mean {other} {spec}?")
    return directory


def auto_convert(src: Path) -> Path:
    """Convert an original-layout directory into the user cache (once per source directory)."""
    key = hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:12]
    dst = converted_cache_dir() / f"{src.resolve().name}-{key}"
    if (dst / "config.json").exists():
        return dst
    if dst.is_dir():  # our own cache: a conversion that did not finish
        shutil.rmtree(dst)
    log.info("converting original Higgs Audio checkpoint %s -> %s (once)", src, dst)
    convert(src, dst)
    return dst


# --- conversion (conversion.py) ------------------------------------------------------------------
def convert(src: Path, dst: Path) -> str:
    """Convert an original-layout LM or codec directory to the transformers layout; returns the kind."""
    from .conversion import convert as run

    return run(src, dst)


# --- loading -------------------------------------------------------------------------------------
@dataclass
class Loaded:
    """A loaded model + processor pair; torch objects stay inside the engine."""

    model: Any  # HiggsAudioV2ForConditionalGeneration
    processor: Any  # HiggsAudioV2Processor (tokenizer + feature extractor + codec)
    device: Any
    dtype: Any
    model_dir: Path
    codec_dir: Path

    @property
    def codec(self) -> Any:
        return self.processor.audio_tokenizer

    @property
    def num_codebooks(self) -> int:
        return int(self.model.config.num_codebooks)

    @property
    def sample_rate(self) -> int:
        return int(self.codec.config.sample_rate)

    @property
    def hop_length(self) -> int:
        return int(self.codec.config.hop_length)


def resolve_device(device: str, dtype: str) -> tuple[Any, Any]:
    """(torch.device, torch.dtype) for the settings: CUDA bf16 (fp16 without bf16 support), CPU float32."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineUnavailable(f"--device {device} but no CUDA GPU is visible; use --device cpu (slow) or fix the CUDA setup")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise UsageError(f"unknown device {device!r}; use auto, cuda, cuda:N or cpu") from e
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    if dtype == "auto":
        if dev.type == "cuda":
            with torch.cuda.device(dev):  # ask the chosen GPU, not the current one
                return dev, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return dev, torch.float32
    names = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
             "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}
    if dtype not in names:
        raise UsageError(f"unknown dtype {dtype!r}; use auto, bfloat16, float16 or float32")
    return dev, names[dtype]


def load(settings: Any) -> Loaded:
    """Load (or reuse) the LM and codec named by the settings on their device; one copy per process."""
    model_id = model_spec(settings.model, DEFAULT_MODEL, "HIGGS_MODEL")
    codec_id = model_spec(settings.codec, DEFAULT_CODEC, "HIGGS_CODEC")
    device, dtype = resolve_device(settings.device, settings.dtype)
    key = (model_id, codec_id, settings.revision, settings.codec_revision, str(device), str(dtype))
    if key not in _LOADED:
        if device.type == "cpu":
            warnings.warn(CPU_WARNING, RuntimeWarning, stacklevel=2)
        model_dir = ready_dir(model_id, settings.revision, "lm")
        codec_dir = ready_dir(codec_id, settings.codec_revision, "codec")
        _LOADED[key] = _load_dirs(model_dir, codec_dir, device, dtype)
    return _LOADED[key]


def _load_dirs(model_dir: Path, codec_dir: Path, device: Any, dtype: Any) -> Loaded:
    from safetensors import SafetensorError
    from transformers import HiggsAudioV2ForConditionalGeneration, HiggsAudioV2TokenizerModel

    try:
        model = HiggsAudioV2ForConditionalGeneration.from_pretrained(model_dir, dtype=dtype).to(device).eval()
        codec = HiggsAudioV2TokenizerModel.from_pretrained(codec_dir).to(device).eval()
        processor = assemble_processor(model_dir, codec_dir, codec, model.config)
    except (OSError, ValueError, SafetensorError) as e:  # SafetensorError: a truncated or damaged weights file
        raise RenderError(f"cannot load Higgs Audio weights from {model_dir} / {codec_dir} "
                          f"({e.__class__.__name__}: {str(e).splitlines()[0][:160]}); re-run `higgs model download`") from e
    return Loaded(model, processor, device, dtype, model_dir, codec_dir)


def assemble_processor(model_dir: Path, codec_dir: Path, codec: Any, config: Any) -> Any:
    """Build the processor from local parts (the codec path stored in processor_config.json is ignored)."""
    from transformers import AutoTokenizer, DacFeatureExtractor, HiggsAudioV2Processor

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if (codec_dir / "preprocessor_config.json").exists():
        features = DacFeatureExtractor.from_pretrained(codec_dir)
    else:
        features = DacFeatureExtractor(feature_size=1, hop_length=codec.config.hop_length, padding_value=0.0,
                                       sampling_rate=codec.config.sample_rate, return_attention_mask=True)
    return HiggsAudioV2Processor(
        feature_extractor=features, tokenizer=tokenizer, audio_tokenizer=codec,
        audio_stream_bos_id=config.audio_stream_bos_id, audio_stream_eos_id=config.audio_stream_eos_id,
    )


def clear_cache() -> None:
    """Forget loaded models (tests; long-lived processes switching models)."""
    _LOADED.clear()


# --- cheap availability (no torch) -----------------------------------------------------------------
def weights_present(spec: str, revision: str | None = None) -> bool:
    """True when `spec` is a local directory or a hub id whose snapshot is in the local cache."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return (path / "config.json").exists()
    if not is_hub_id(spec):
        return False
    try:
        snapshot = cached_snapshot(spec, revision)
    except Exception:  # a broken cache must not break `higgs engines`
        return False
    return snapshot is not None and _complete(snapshot)


# --- cache listing (higgs model info) ------------------------------------------------------------
def cache_info() -> list[dict[str, Any]]:
    """Higgs-related repos in the HF cache and converted checkpoints in our cache."""
    from huggingface_hub import scan_cache_dir

    rows: list[dict[str, Any]] = []
    try:
        repos = scan_cache_dir().repos
    except Exception:  # no cache dir yet
        repos = frozenset()
    wanted = {DEFAULT_MODEL, DEFAULT_CODEC, model_spec(DEFAULT_MODEL, DEFAULT_MODEL, "HIGGS_MODEL"),
              model_spec(DEFAULT_CODEC, DEFAULT_CODEC, "HIGGS_CODEC")}
    for repo in sorted(repos, key=lambda r: r.repo_id):
        if repo.repo_id in wanted or "higgs" in repo.repo_id.lower():
            for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
                rows.append({"id": repo.repo_id, "revision": rev.commit_hash[:12], "refs": sorted(rev.refs),
                             "size_bytes": rev.size_on_disk, "path": str(rev.snapshot_path)})
    converted = converted_cache_dir()
    if converted.is_dir():
        for d in sorted(converted.iterdir()):
            if (d / "config.json").exists():
                size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
                rows.append({"id": f"converted:{d.name}", "revision": None, "refs": [], "size_bytes": size, "path": str(d)})
    return rows


def download(model: str = DEFAULT_MODEL, codec: str = DEFAULT_CODEC, revision: str | None = None,
             codec_revision: str | None = None, say: Callable[[str], None] | None = None) -> list[Path]:
    """Prefetch the LM and codec into the HF cache (hub ids only; local directories are left alone)."""
    if is_offline():
        raise EngineUnavailable("HF_HUB_OFFLINE is set; unset it to download, or copy the weights and pass --model/--codec DIR")
    paths = []
    for spec, rev in ((model, revision), (codec, codec_revision)):
        path = Path(spec).expanduser()
        paths.append(path if path.is_dir() else download_repo(spec, rev, say))
    return paths
