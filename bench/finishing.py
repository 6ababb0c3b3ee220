"""Finishing a long programme in bounded memory: peak RSS of `higgs generate` with a music bed,
ducking and programme loudness, for a ~45-minute and a ~90-minute render (eSpeak, the fastest
CPU engine, so the finishing passes dominate), written to m4b.

Usage: .venv/bin/python bench/finishing.py
Prints a Markdown table on stdout (peak RSS from /usr/bin/time -v).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from longform import paragraph  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def transcript(path: Path, paragraphs: int) -> Path:
    lines = ["# Part One"]
    for p in range(paragraphs):
        if p == paragraphs // 2:
            lines.append("# Part Two")
        lines.append(f"[{'MAYA' if p % 3 == 0 else 'NARRATOR'}] {paragraph(p)}")
    path.write_text("\n\n".join(lines) + "\n")
    return path


def bed(path: Path) -> Path:
    """A 40 s synthetic music loop (chords over a slow pulse), written by this script."""
    t = np.arange(40 * 24_000) / 24_000
    chord = sum(np.sin(2 * np.pi * f * t) for f in (196.0, 246.9, 293.7)) / 3
    pulse = 0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t)
    sf.write(path, (0.4 * chord * pulse).astype(np.float32), 24_000)
    return path


def measure(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    started = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "higgs_cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return wall, rss, proc.stdout


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="higgs-finish-") as tmp:
        folder = Path(tmp)
        music = bed(folder / "bed.wav")
        env = {**os.environ, "HIGGS_CACHE_DIR": str(folder / "cache")}
        for paragraphs in (60, 120):
            text = transcript(folder / f"t{paragraphs}.txt", paragraphs)
            base = ["generate", "-t", str(text), "--engine", "espeak", "--chunk", "paragraph", "--max-words", "80", "--quiet"]
            measure([*base, "-o", str(folder / "warm.wav")], env)  # fill the chunk cache: time the finishing, not eSpeak
            plain_wall, plain_rss, _ = measure([*base, "-o", str(folder / "plain.wav")], env)
            out = folder / f"book{paragraphs}.m4b"
            wall, rss, stdout = measure([*base, "-o", str(out), "--music", str(music), "--loudness", "audiobook", "--json"], env)
            doc = json.loads(stdout)
            loud = doc["finish"]["loudness"]
            rows.append(f"| {doc['duration'] / 60:.1f} min | {plain_wall:.1f} s | {plain_rss / 1024:.0f} MiB | {wall:.1f} s | "
                        f"{rss / 1024:.0f} MiB | {loud['rms_db']:.1f} dB RMS, peak {loud['true_peak_dbtp']:.1f} dBTP |")
    print("| programme | plain wav (cached chunks) wall | peak RSS | + music, ducking, ACX loudness, m4b wall | peak RSS | measured |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
