"""Long-form build benchmarks (issue: long jobs that never lose work).

1. No-op rebuild of a rendered ~1-hour project (CPU engine): wall time of `higgs build` when
   nothing changed (target < 2 s).
2. Rebuild after editing one paragraph in the middle: chunks rendered (target 1 + context dependants;
   the CPU engines condition on no other chunk, so 1).
3. kill -9 at 5 random points of a 50-chunk render, resuming each time: no finished chunk is rendered
   again, and with the seeded Piper engine the final file is byte-identical to an uninterrupted render.

Usage: .venv/bin/python bench/longform.py [--engine espeak] [--seed 1]
Prints a Markdown report on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HIGGS = [sys.executable, "-m", "higgs_cli"]
SUBJECTS = ["the lighthouse", "the harbour", "the old mill", "the ferry", "the market", "the orchard", "the bridge",
            "the library", "the station", "the bakery", "the school", "the chapel"]
VERBS = ["stood", "waited", "shone", "creaked", "hummed", "slept", "glowed", "trembled"]


def paragraph(n: int) -> str:
    """A unique ~75-word paragraph (unique text, so every chunk has its own cache key)."""
    rng = random.Random(n)
    sentences = []
    for k in range(6):
        subject, verb = rng.choice(SUBJECTS), rng.choice(VERBS)
        sentences.append(f"On day {n * 6 + k}, {subject} {verb} quietly while the wind moved across the water and the town went about its work.")
    return " ".join(sentences)


def run(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    proc = subprocess.run([*HIGGS, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"higgs {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return time.monotonic() - started, proc


def write_project(folder: Path, engine: str, chapters: int, paragraphs: int) -> Path:
    names = []
    for c in range(chapters):
        body = [f"# Chapter {c + 1}"]
        for p in range(paragraphs):
            speaker = "NARRATOR" if p % 3 else "MAYA"
            body.append(f"[{speaker}] {paragraph(c * 1000 + p)}")
        (folder / f"ch{c + 1:02d}.txt").write_text("\n\n".join(body) + "\n")
        names.append(f"ch{c + 1:02d}.txt")
    project = folder / "book.yaml"
    project.write_text(json.dumps({"title": "Bench", "engine": engine, "chapters": names, "build_dir": "out",
                                   "output": "book.wav", "chunk": "paragraph", "max_words": 80}))
    return project


def bench_noop(engine: str, env: dict[str, str], folder: Path) -> list[str]:
    project = write_project(folder, engine, chapters=6, paragraphs=20)
    first, proc = run(["build", str(project), "--json", "--quiet"], env)
    duration = json.loads(proc.stdout)["book"]["duration"]
    noops = [run(["build", str(project), "--quiet"], env)[0] for _ in range(5)]
    middle = folder / "ch03.txt"
    text = middle.read_text()
    target = paragraph(2 * 1000 + 10)
    middle.write_text(text.replace(target, target.replace("quietly", "softly", 1)))
    edit_time, proc = run(["build", str(project), "--json", "--quiet"], env)
    summary = json.loads(proc.stdout)
    rebuilt = [c for c in summary["chapters"] if c["built"]]
    rendered = sum(json.loads(Path(c["output"]).with_suffix(".json").read_text())["rendered"] for c in rebuilt)
    chunks = sum(len(json.loads(Path(c["output"]).with_suffix(".json").read_text())["chunks"]) for c in summary["chapters"])
    return [
        f"Project: 6 chapters x 20 paragraphs (~{6 * 20 * 75} words, {chunks} chunks), engine `{engine}`, "
        f"bound book {duration / 60:.1f} min.",
        "",
        "| measurement | result |",
        "|---|---|",
        f"| first build (render all + bind) | {first:.1f} s |",
        f"| no-op rebuild, 5 runs | median {statistics.median(noops):.2f} s, max {max(noops):.2f} s |",
        f"| edit one paragraph in chapter 3, rebuild | {edit_time:.1f} s; chapters rebuilt: {len(rebuilt)}; chunks rendered: {rendered} |",
    ]


def bench_kills(env: dict[str, str], folder: Path, seed: int) -> list[str]:
    text = "\n\n".join(f"[{'MAYA' if i % 4 == 0 else 'NARRATOR'}] Line {i}: {paragraph(i).split('.')[0]}." for i in range(50))
    transcript = folder / "fifty.txt"
    transcript.write_text(text)
    out = folder / "resumed.wav"
    env = {**env, "HIGGS_CACHE_DIR": str(folder / "kill-cache")}
    args = ["generate", "-t", str(transcript), "-o", str(out), "--engine", "piper", "--chunk", "paragraph", "--quiet"]
    cache_dir = folder / "kill-cache"
    rng = random.Random(seed)
    targets = sorted(rng.sample(range(3, 48), 5))  # kill points spread over the render, in chunks finished
    rows, stored = [], 0
    for attempt, target in enumerate(targets):
        proc = subprocess.Popen([*HIGGS, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while len(list(cache_dir.glob("??/*.npz"))) < target and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))  # land anywhere inside the next chunk
        proc.kill()
        proc.wait()
        now = len(list(cache_dir.glob("??/*.npz")))
        rows.append(f"| kill {attempt + 1} | once {target} chunks were stored, +{now - target} | {now - stored} | {now} | "
                    f"{'yes' if out.exists() else 'no'} |")
        stored = now
    _, proc = run([*args[:-1], "--json", "--quiet"], env)
    doc = json.loads(proc.stdout)
    reused = sum(1 for c in doc["chunks"] if c["cached"])
    fresh = folder / "fresh.wav"
    run(["generate", "-t", str(transcript), "-o", str(fresh), "--engine", "piper", "--chunk", "paragraph", "--quiet", "--no-cache"], env)
    identical = out.read_bytes() == fresh.read_bytes()
    return [
        "| attempt | killed | chunks finished in this run | chunks stored | output file present |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Final run: {len(doc['chunks'])} chunks, {reused} reused from the cache (= {stored} stored before it), "
        f"{doc['rendered']} rendered. Chunks rendered to completion over all runs: {stored + doc['rendered']} "
        f"(each of the 50 exactly once). Final file byte-identical to an uninterrupted `--no-cache` render: "
        f"{'yes' if identical else 'NO'}.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="espeak", help="engine for the 1-hour project (espeak renders it fastest)")
    parser.add_argument("--seed", type=int, default=1, help="seed for the kill times")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="higgs-bench-") as tmp:
        folder = Path(tmp)
        env = {**os.environ, "HIGGS_CACHE_DIR": str(folder / "cache")}
        print("### No-op rebuild and one-paragraph edit\n")
        print("\n".join(bench_noop(args.engine, env, folder)))
        print("\n### kill -9 at 5 random points of a 50-chunk render, resumed each time\n")
        print("\n".join(bench_kills(env, folder, args.seed)))


if __name__ == "__main__":
    main()
