"""Shared helpers for the bench scripts: render a reference-style clip, and keep BENCHMARKS.md current."""

from __future__ import annotations

import datetime
import os
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
CLIP_PEAK = 0.8  # bundled reference clips are peak-normalised to this level


def render_clip(engine, voice, text: str, seed: int = 0) -> np.ndarray:
    """Render `text` the way a bundled reference clip is made: engine -> trim -> peak 0.8 -> 8 ms fades."""
    from higgs_cli.audio import fade_edges, trim_silence
    from higgs_cli.engines import ChunkRequest
    from higgs_cli.options import SAMPLE_RATE

    audio = engine.synthesize(ChunkRequest(0, "BENCH", text, voice, seed)).audio
    audio = trim_silence(audio, SAMPLE_RATE)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0:
        audio = audio * (CLIP_PEAK / peak)
    return fade_edges(audio.astype(np.float32), SAMPLE_RATE)


def machine_line() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        model = f" ({found.group(1).strip()})" if found else ""
    return f"# Benchmarks: {cores} CPU cores{model}, CPU only (no GPU), {datetime.date.today().isoformat()}"


def update_section(title: str, body: str) -> None:
    """Replace (or append) the `## title` section of BENCHMARKS.md and refresh the machine line."""
    text = BENCHMARKS.read_text(encoding="utf-8") if BENCHMARKS.exists() else ""
    lines = text.splitlines()
    if lines and lines[0].startswith("# Benchmarks"):
        lines = lines[1:]
    rest = "\n".join(lines).strip("\n")
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(rest):
        rest = pattern.sub(lambda _: section + "\n", rest).rstrip("\n")
    else:
        rest = (rest + "\n\n" if rest else "") + section
    BENCHMARKS.write_text(f"{machine_line()}\n\n{rest.strip()}\n", encoding="utf-8")


def md_table(header: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)
