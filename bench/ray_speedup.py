"""Speed-up of `higgs build --ray local` over a local build, and Ray's overhead per chunk, with the piper engine.

A book of three chapters (the first paragraphs of `long_text.txt`, sentence chunks) is built four ways, each
with an empty cache: locally chunk after chunk (`--jobs 1`), locally with two worker processes (`--jobs 2`,
the pool that already exists for CPU engines), and on a local Ray runtime with two workers and with one.
Ray's start-up (runtime, then actors loading Piper) is timed apart from the rendering pass it serves.
Overhead per chunk = (one Ray worker's pass - the same chunks rendered directly in this process) / chunks,
which is what Ray adds per chunk: dispatch, transfer of the audio, the driver's cache write. It is given
in wall time and in CPU time (the workers' processes, read from /proc, plus the driver's), because on a
shared machine wall time mostly measures how much of the CPU the other jobs left.

The machine is shared: the load average before and after is recorded with the numbers.

    .venv/bin/python bench/ray_speedup.py [--paragraphs 12] [--no-write]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, machine_line, md_table, update_section  # noqa: E402

TEXT = ROOT / "bench" / "long_text.txt"


def write_book(folder: Path, paragraphs: int) -> Path:
    import yaml

    parts = [p for p in TEXT.read_text(encoding="utf-8").split("\n\n") if p.strip()][:paragraphs]
    third = -(-len(parts) // 3)
    names = []
    for n in range(3):
        name = f"ch{n + 1}.txt"
        (folder / name).write_text(f"# Chapter {n + 1}\n\n" + "\n\n".join(parts[n * third:(n + 1) * third]) + "\n")
        names.append(name)
    doc = {"title": "Bench", "engine": "piper", "chunk": "sentence", "chapters": names, "build_dir": "out"}
    (folder / "book.yaml").write_text(yaml.safe_dump(doc))
    return folder / "book.yaml"


def timed_build(book: Path, cache: Path, jobs: int = 1, ray=None) -> tuple[float, dict]:
    from higgs_cli.build import build, load_project
    from higgs_cli.cache import ChunkCache

    marks: dict = {}

    def on_event(event) -> None:
        if event.kind == "ray-progress":
            p = event.detail["progress"]
            if "ready" not in marks:  # actors are up: the first report comes before any chunk
                marks["ready"], marks["cpu0"] = time.monotonic(), cpu_seconds([w.pid for w in p.workers])
            if p.done == p.total:
                marks["last"], marks["workers"] = time.monotonic(), len(p.workers)
                marks["cpu"] = cpu_seconds([w.pid for w in p.workers]) - marks["cpu0"]

    started = time.monotonic()
    build(load_project(book), "piper", ChunkCache(cache), jobs=jobs, force=True, on_event=on_event, ray=ray)
    marks["start"] = started
    return time.monotonic() - started, marks


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) of these processes and of this one so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = time.process_time()
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def direct_render(book: Path) -> tuple[float, float, int]:
    """Every chunk of the book through one Piper engine in this process (no assembly): the work itself."""
    from higgs_cli import engines
    from higgs_cli.build import book_cast, load_project
    from higgs_cli.pipeline import make_plan
    from higgs_cli.transcript import read_transcript

    project = load_project(book)
    options = replace(project.options, engine="piper")
    scripts = [read_transcript(c.source) for c in project.chapters]
    voices = book_cast(scripts, options)
    plans = [make_plan(s, options, "piper", voices) for s in scripts]
    engine = engines.create("piper")
    started, cpu = time.monotonic(), time.process_time()
    n = 0
    for plan in plans:
        for i in range(len(plan.chunks)):
            engine.synthesize(plan.request(i))
            n += 1
    return time.monotonic() - started, time.process_time() - cpu, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paragraphs", type=int, default=12)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    import ray

    from higgs_cli.options import RaySettings

    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="higgs-ray-bench-"))
    book = write_book(work, args.paragraphs)
    direct, direct_cpu, chunks = direct_render(book)
    local1, _ = timed_build(book, work / "c1")
    local2, _ = timed_build(book, work / "c2", jobs=2)
    t = time.monotonic()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    runtime = time.monotonic() - t
    rows = []
    try:
        for workers in (2, 1):
            total, marks = timed_build(book, work / f"r{workers}", ray=RaySettings(address="local", workers=workers))
            rows.append((workers, total, marks["ready"] - marks["start"], marks["last"] - marks["ready"], marks["cpu"]))
    finally:
        ray.shutdown()
    load_after = os.getloadavg()

    (_, total2, actors2, pass2, cpu2), (_, total1, actors1, pass1, cpu1) = rows
    overhead, overhead_cpu = (pass1 - direct) / chunks, (cpu1 - direct_cpu) / chunks
    table = md_table(
        ["how", "wall s", "of which start-up s", "rendering pass s", "speed-up vs --jobs 1"],
        [["local, --jobs 1", f"{local1:.1f}", "-", "-", "1.00"],
         ["local, --jobs 2 (process pool)", f"{local2:.1f}", "-", "-", f"{local1 / local2:.2f}"],
         ["Ray local, 2 workers", f"{total2 + runtime:.1f}", f"{runtime + actors2:.1f} (runtime {runtime:.1f} + actors {actors2:.1f})",
          f"{pass2:.1f}", f"{local1 / (total2 + runtime):.2f} (pass alone: {direct / pass2:.2f} vs direct)"],
         ["Ray local, 1 worker", f"{total1:.1f} (+ runtime)", f"{actors1:.1f} (actors)", f"{pass1:.1f}", "-"]])
    cpu = md_table(["rendering the chunks", "CPU s", "CPU s a chunk"],
                   [["directly, one engine in the driver", f"{direct_cpu:.1f}", f"{direct_cpu / chunks:.3f}"],
                    ["Ray, 1 worker (worker + driver)", f"{cpu1:.1f}", f"{cpu1 / chunks:.3f}"],
                    ["Ray, 2 workers (workers + driver)", f"{cpu2:.1f}", f"{cpu2 / chunks:.3f}"]])
    machine = machine_line().removeprefix("# Benchmarks: ")
    busy = direct_cpu / direct  # cores one engine keeps busy on its own
    body = (f"Measured on {machine}. {chunks} piper chunks (sentence chunking, 3 chapter files, the first {args.paragraphs} paragraphs of "
            f"`bench/long_text.txt`); every build starts from an empty cache and includes assembly.\n"
            f"The same chunks rendered directly by one engine in the driver: {direct:.1f} s ({direct / chunks:.2f} s a chunk).\n\n"
            f"{table}\n\n{cpu}\n\n"
            f"Ray overhead per chunk (one worker's pass minus the direct render, over {chunks} chunks): "
            f"**{overhead * 1000:.0f} ms wall, {overhead_cpu * 1000:.0f} ms CPU**.\n"
            f"One piper engine rendering alone already keeps {busy:.1f} of this machine's {os.cpu_count()} cores busy (CPU s / wall s of the "
            "direct render), so here a second worker, local or on Ray, has no idle core to use: the speed-up column shows what that "
            "costs. Ray's gain needs cores or machines beyond what one engine fills (README, \"Scaling out on Ray\").\n"
            f"Load average (1/5/15 min) before: {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, after: "
            f"{load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f} (above about 1 on 2 cores, other jobs shared them and the times are noisy).\n\n"
            "Command: `.venv/bin/python bench/ray_speedup.py` (Ray 2.60.0, `pip install \"higgs-cli[ray]\"`).")
    print(body)
    if not args.no_write:
        update_section("Ray: speed-up and overhead per chunk (CPU, 2 workers)", body)


if __name__ == "__main__":
    main()
