"""Fetching Higgs Audio v2 checkpoints from the Hugging Face Hub: only the files our loaders read, with their size said first.

A repo may hold more than the loaders need: Boson's legacy `model.pth` beside the republished safetensors,
shard sets the weight index does not name, README media. `loader_files` picks from a repo listing what
model.py reads for that layout (configs, the weights the index names, tokenizer and templates), and `fetch`
downloads just those after saying how large they are. huggingface_hub is imported inside the functions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

INDEX = "model.safetensors.index.json"
LM_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
            "tokenizer.model", "chat_template.jinja", "chat_template.json")
CODEC_FILES = ("config.json", "preprocessor_config.json")
LARGE_BYTES = 100_000_000  # say the size before downloading more than this


def loader_files(files: Mapping[str, int], config: Mapping[str, Any], index: Mapping[str, Any] | None = None) -> list[str]:
    """The names in a repo listing (name -> size) that loading reads, given its config.json and weight index.

    Weights: the shards the index names, else `model.safetensors`, else (Boson's original codec only) `model.pth`.
    """
    is_lm = config.get("model_type") in ("higgs_audio_v2", "higgs_audio")
    wanted = [name for name in (LM_FILES if is_lm else CODEC_FILES) if name in files]
    if index is not None:
        wanted += [INDEX, *sorted(set(index.get("weight_map", {}).values()))]
    elif "model.safetensors" in files:
        wanted.append("model.safetensors")
    elif "model.pth" in files and not is_lm:
        wanted.append("model.pth")
    return wanted


def size_text(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def fetch(repo_id: str, revision: str | None = None, say: Callable[[str], None] | None = None) -> Path:
    """Download what the loaders read from `repo_id` into the HF cache (sizes said first when large); its snapshot dir."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    files = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
    if "config.json" not in files:
        raise FileNotFoundError(f"{repo_id} has no config.json")
    config = json.loads(Path(hf_hub_download(repo_id, "config.json", revision=revision)).read_text(encoding="utf-8"))
    index = json.loads(Path(hf_hub_download(repo_id, INDEX, revision=revision)).read_text(encoding="utf-8")) if INDEX in files else None
    wanted = loader_files(files, config, index)
    missing = [name for name in wanted if name not in files]
    if missing:
        raise FileNotFoundError(f"{repo_id}: the weight index names {missing[0]}, which the repo lacks")
    total = sum(files[name] for name in wanted)
    skipped = sum(size for name, size in files.items() if name not in wanted)
    if total >= LARGE_BYTES:
        (say or log.warning)(f"downloading {repo_id}: {len(wanted)} files, {size_text(total)}"
                             + (f" (skipping {size_text(skipped)} the loaders do not read)" if skipped >= 1e6 else ""))
    return Path(snapshot_download(repo_id, revision=revision, allow_patterns=wanted))
