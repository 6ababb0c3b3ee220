"""`higgs serve` under load: time to first audio and throughput with 1, 8 and 32 concurrent clients.

Starts `higgs serve` as a subprocess on a free loopback port (no cache, so every request renders), then for
each client count sends that many streamed requests at once (`stream_format: audio`, pcm), each a different
two-paragraph text (two chunks). Per request: time to the first audio byte and to the last; per round: audio
seconds delivered per wall-clock second. Writes BENCHMARKS.md ("Speech server under load").

    .venv/bin/python bench/serve.py [--engine piper] [--workers 2] [--clients 1,8,32] [--qa off] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCHMARKS, ROOT, md_table  # noqa: E402

BYTES_PER_SECOND = 24000 * 2  # pcm: s16le mono at 24 kHz


def _text(n: int) -> str:
    return (f"Request number {n} begins with a short opening paragraph.\n\n"
            f"Its second paragraph, number {n} as well, closes the request.")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ask(url: str, n: int) -> tuple[float, float, int]:
    body = {"model": "tts-1", "voice": "joe", "input": _text(n), "response_format": "pcm", "stream_format": "audio"}
    start, first, size = time.monotonic(), None, 0
    with httpx.stream("POST", f"{url}/v1/audio/speech", json=body, timeout=600) as r:
        r.raise_for_status()
        for block in r.iter_raw():
            first = first or time.monotonic()
            size += len(block)
    return (first or time.monotonic()) - start, time.monotonic() - start, size


def round_of(url: str, clients: int, offset: int) -> dict:
    start = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda n: _ask(url, offset + n), range(clients)))
    wall = time.monotonic() - start
    ttfa = [r[0] for r in results]
    audio = sum(r[2] for r in results) / BYTES_PER_SECOND
    return {"clients": clients, "ttfa_median": statistics.median(ttfa), "ttfa_max": max(ttfa),
            "total_median": statistics.median(r[1] for r in results), "wall": wall, "audio": audio, "rate": audio / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="piper")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--qa", default="off", help="the server's --qa (off, report, retake, strict): the quality gate's cost")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    port = _free_port()
    cmd = [sys.executable, "-m", "higgs_cli", "serve", "--engine", args.engine, "--port", str(port), "--no-cache",
           "--workers", str(args.workers), "--max-concurrent", str(max(counts)), "--max-waiting", str(max(counts)), "--qa", args.qa]
    log = tempfile.NamedTemporaryFile(prefix="higgs-serve-", suffix=".log", delete=False)
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() - started > 300:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        ready = time.monotonic() - started
        _ask(url, 10_000)  # warm-up: first-call costs (phonemiser, ONNX graphs) are not load
        rows, offset, loads, logged = [], 0, [], 1  # the warm-up is the first access-log line
        for clients in counts:
            result = round_of(url, clients, offset)
            offset += clients
            deadline = time.monotonic() + 10  # a line is written just after its reply ends
            while len(_access_log(log.name)) < logged + clients and time.monotonic() < deadline:
                time.sleep(0.1)
            entries = _access_log(log.name)[logged:logged + clients]
            server_first = [e["first_byte_ms"] / 1000 for e in entries if e.get("first_byte_ms")]
            if args.qa != "off":  # what the gate did in this round
                print({k: sum(e.get("qa", {}).get(k, 0) for e in entries) for k in ("checked", "flagged", "retaken")}, flush=True)
            logged += clients
            loads.append(os.getloadavg()[0])
            print(result, flush=True)
            rows.append([clients, f"{result['ttfa_median']:.2f}", f"{result['ttfa_max']:.2f}",
                         f"{statistics.median(server_first):.2f} / {max(server_first):.2f}" if server_first else "-",
                         f"{result['total_median']:.2f}", f"{result['audio']:.1f}", f"{result['wall']:.1f}", f"{result['rate']:.2f}"])
    finally:
        server.terminate()
        server.wait(timeout=30)
        Path(log.name).unlink(missing_ok=True)
    table = md_table(["clients", "first audio, median (s)", "first audio, max (s)", "server first byte, median / max (s)",
                      "whole reply, median (s)", "audio delivered (s)", "wall (s)", "audio s per wall s"], rows)
    qa = f" --qa {args.qa}" if args.qa != "off" else ""
    body = f"""Command: `.venv/bin/python bench/serve.py --engine {args.engine} --workers {args.workers} --clients {args.clients}{qa}`
(`higgs serve --no-cache`: every request renders; each client streams a different two-paragraph text, two chunks,
`stream_format: audio`, pcm; the server admits all of them at once). {_machine()}; 1-minute load average after
each round: {", ".join(f"{x:.1f}" for x in loads)} (other jobs were running). Server ready (engines loaded) after
{ready:.1f} s. "Server first byte" is the access log's `first_byte_ms`: from the request reaching the app to its
first audio byte.

{table}

"First audio" is the time from sending the request to its first audio byte: one chunk's render while the
workers have room, longer once every worker is busy: a free worker takes the next chunk of the running
request that has been handed the fewest so far (each request's first chunk before anyone's second; before
this rule, a plain rotation, the slowest of 32 first chunks came after 128-167 s in two runs). Throughput is bounded by the {args.workers} workers
and the machine's cores; measured on a shared 2-core machine, so compare rows with each other, not with other
sections. GPU figures for the higgs engine's shared batch were not measured (no GPU was lent to this task)."""
    if not args.no_write:
        _write_section("Speech server under load", body)
    print(body)


def _access_log(path: str) -> list[dict]:
    lines = Path(path).read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{") and '"path": "/v1/audio/speech"' in line]


def _machine() -> str:
    found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M) if Path("/proc/cpuinfo").exists() else None
    return f"{os.cpu_count()} CPU cores{f' ({found.group(1).strip()})' if found else ''}, {datetime.date.today().isoformat()}"


def _write_section(title: str, body: str) -> None:
    """Replace or append this section only (the file's first line describes the other sections' machine)."""
    text = BENCHMARKS.read_text(encoding="utf-8")
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    BENCHMARKS.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
