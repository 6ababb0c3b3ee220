"""`--ray`: chunks rendered by engine actors on a real local Ray runtime (2 CPUs) give the local build's bytes,
survive a killed worker, resume after Ctrl-C, and fail in one line without Ray or without a reachable cluster.

One Ray runtime serves the whole module (starting one costs ~10 s here); the library and the CLI use a runtime
the process already holds instead of starting their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from typer.testing import CliRunner

from higgs_cli.cli import app

CHAPTERS = {
    "one.txt": "# One\n\n[NARRATOR] It began at dawn.\n\n[MAYA] Did it? I slept.\n",
    "two.txt": "# Two\n\n[NARRATOR] It ended at dusk.\n",
    "three.txt": "# Three\n\n[MAYA] A last word.\n\n[NARRATOR] The end.\n",
}
CHUNKS = 9  # sentence chunks of the three chapters (a heading is a chunk of its own)


def write_book(folder: Path, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in CHAPTERS.items():
        (folder / name).write_text(text)
    doc = {"title": "Ray Book", "engine": "piper", "chunk": "sentence", "voices": {"NARRATOR": "otis", "MAYA": "ava"},
           "chapters": list(CHAPTERS), "build_dir": "out", "output": "book.wav", **extra}
    (folder / "book.yaml").write_text(yaml.safe_dump(doc))
    return folder / "book.yaml"


def audio_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "out").glob("*.wav"))}


def cli(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def local_book(tmp_path_factory) -> dict[str, bytes]:
    """The book built without Ray: what every Ray build must equal, byte for byte."""
    folder = tmp_path_factory.mktemp("local")
    summary = cli("build", str(write_book(folder)), "--cache", str(folder / "cache"))
    assert [c["built"] for c in summary["chapters"]] == [True, True, True]
    return audio_files(folder)


@pytest.fixture(scope="module")
def runtime():
    ray = pytest.importorskip("ray")
    import logging

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


def build_on_ray(path: Path, on_event=None, **ray) -> dict:
    from higgs_cli.build import build, load_project
    from higgs_cli.cache import ChunkCache
    from higgs_cli.options import RaySettings

    return build(load_project(path), "piper", ChunkCache(path.parent / "cache"), on_event=on_event,
                 ray=RaySettings(address="local", **ray))


def test_a_book_built_on_ray_equals_the_local_build(runtime, local_book, tmp_path):
    summary = cli("build", str(write_book(tmp_path)), "--cache", str(tmp_path / "cache"), "--ray", "local")
    assert [c["built"] for c in summary["chapters"]] == [True, True, True] and summary["book"]["built"]
    assert audio_files(tmp_path) == local_book
    manifests = [json.loads((tmp_path / "out" / f"{n}.json").read_text()) for n in ("one", "two", "three")]
    assert sum(m["batched"] for m in manifests) == CHUNKS  # every chunk came from the Ray pass
    again = cli("build", str(tmp_path / "book.yaml"), "--cache", str(tmp_path / "cache"), "--ray", "local")
    assert [c["built"] for c in again["chapters"]] == [False, False, False]  # same build keys: nothing to do


def test_a_killed_worker_costs_only_its_chunk(runtime, local_book, tmp_path):
    """Kill one actor's process after the first chunk comes back: Ray restarts it, the build completes unchanged."""
    seen, killed = [], []

    def on_event(event):
        if event.kind != "ray-progress":
            return
        progress = event.detail["progress"]
        seen.append(progress)
        if progress.done >= 1 and not killed:
            killed.append(progress.workers[0].pid)
            os.kill(killed[0], signal.SIGKILL)

    build_on_ray(write_book(tmp_path), on_event, cache="driver", workers=8)
    assert killed and audio_files(tmp_path) == local_book
    last = seen[-1]
    assert len(last.workers) == 2  # 8 asked, 2 CPUs free: the rest would have waited forever for a slot
    assert last.done == last.total == CHUNKS
    assert killed[0] not in [w.pid for w in last.workers]  # the worker answered from a new process
    assert len(list((tmp_path / "cache").glob("??/*.npz"))) == CHUNKS


def test_an_interrupted_ray_build_resumes_from_the_cache(runtime, local_book, tmp_path):
    path = write_book(tmp_path)

    def interrupt(event):
        if event.kind == "ray-progress" and event.detail["progress"].done == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C reaches the driver

    with pytest.raises(KeyboardInterrupt):
        build_on_ray(path, interrupt)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())  # no partial output
    cached = len(list((tmp_path / "cache").glob("??/*.npz")))
    assert 3 <= cached < CHUNKS

    totals = []
    build_on_ray(path, lambda e: totals.append(e.detail["progress"].total) if e.kind == "ray-progress" else None)
    assert totals and totals[-1] == CHUNKS - cached  # only what the interrupted run had not finished
    assert audio_files(tmp_path) == local_book


def test_generate_on_ray_writes_the_local_file_and_manifest(runtime, tmp_path):
    text = "[A] One small test.\n\n[B] And a reply."
    docs = {}
    for name, extra in (("local", []), ("ray", ["--ray", "local"])):
        out = tmp_path / f"{name}.wav"
        doc = cli("dialogue", "--text", text, "-e", "piper", "-o", str(out), "--cache", str(tmp_path / name), *extra)
        docs[name] = json.loads(json.dumps(doc).replace(str(out), "OUT"))
    assert (tmp_path / "local.wav").read_bytes() == (tmp_path / "ray.wav").read_bytes()
    assert docs["ray"] == docs["local"] and docs["ray"]["rendered"] == len(docs["ray"]["chunks"])


def _one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    return lines[0]


def test_without_ray_installed_the_error_is_one_line(tmp_path):
    """A child interpreter whose import system refuses `ray`, as if the extra were not installed."""
    blocker = ("import sys\n"
               "class NoRay:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name == 'ray' or name.startswith('ray.'):\n"
               "            raise ModuleNotFoundError(\"No module named 'ray'\")\n"
               "sys.meta_path.insert(0, NoRay())\n"
               "from higgs_cli.cli import app\n"
               "app(prog_name='higgs')\n")
    out = tmp_path / "x.wav"
    for args in (["generate", "--text", "Hello.", "-e", "espeak", "-o", str(out), "--ray", "local"],
                 ["build", str(write_book(tmp_path / "book", ray="local"))]):
        result = subprocess.run([sys.executable, "-c", blocker, *args], capture_output=True, text=True, timeout=120)
        assert 'pip install "higgs-cli[ray]"' in _one_error_line(result)
    assert not out.exists() and not (tmp_path / "book" / "out").exists()


def test_an_unreachable_cluster_is_one_line_and_quick(tmp_path):
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "higgs_cli", "generate", "--text", "Hello.", "-e", "espeak",
                             "-o", str(tmp_path / "x.wav"), "--ray", f"127.0.0.1:{port}"],
                            capture_output=True, text=True, timeout=120)
    assert "cannot reach the Ray cluster" in _one_error_line(result) and time.monotonic() - started < 60
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize("ray, fragment", [
    ({"address": "local", "cache": "nfs"}, "cache 'nfs'"),
    ({"address": "local", "gpus": 2}, "unknown ray setting 'gpus'"),
    ({"workers": 0}, "workers 0"),
    (["local"], "an address (local, auto, HOST:PORT) or a mapping"),
])
def test_bad_ray_settings_in_a_project_file(tmp_path, ray, fragment):
    result = CliRunner().invoke(app, ["build", str(write_book(tmp_path, ray=ray))])
    assert result.exit_code == 2 and fragment in result.output


@pytest.mark.filterwarnings("ignore:running Higgs Audio v2 on the CPU")
def test_higgs_chains_on_ray_give_the_local_frames(runtime, tmp_path):
    """The tiny random Higgs checkpoint, a book of three chapter files: anchors first (one per voice for the whole
    book), then the chains two at a time (two plans in one actor call), against a local build chunk after chunk."""
    pytest.importorskip("transformers")
    from higgs_cli.voices import user_voices_dir

    from .higgs_tiny import hub_dirs

    folder = user_voices_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "calm.yaml").write_text("description: calm, low voice\ngender: masculine\n")
    model, codec = hub_dirs()
    chapters = {"one.txt": "[SPEAKER0] The sun rises. It sets.\n", "two.txt": "[SPEAKER1] Hello there.\n\n[SPEAKER0] Today.\n",
                "three.txt": "[SPEAKER1] It was my birthday.\n"}
    docs, audio = {}, {}
    for name, batch, extra in (("local", 1, []), ("ray", 2, ["--ray", "local"])):
        book = tmp_path / name
        book.mkdir()
        for file, text in chapters.items():
            (book / file).write_text(text)
        higgs = {"model": str(model), "codec": str(codec), "device": "cpu", "max_new_tokens": 16, "batch": batch}
        (book / "book.yaml").write_text(yaml.safe_dump({"engine": "higgs", "chunk": "sentence", "voices": {"SPEAKER0": "calm"},
                                                        "chapters": list(chapters), "build_dir": "out", "higgs": higgs,
                                                        **({"ray": {"workers": 1}} if extra else {})}))
        cli("build", str(book / "book.yaml"), "--cache", str(book / "cache"), *extra)
        docs[name] = [json.loads((book / "out" / f"{n}.json").read_text()) for n in ("one", "two", "three")]
        audio[name] = [sf.read(str(book / "out" / f"{n}.wav"), dtype="float32")[0] for n in ("one", "two", "three")]
    keep = ("index", "frames", "context", "voice_lock", "chain", "seed")
    assert [[{k: r[k] for k in keep} for r in d["chunks"]] for d in docs["ray"]] == \
        [[{k: r[k] for k in keep} for r in d["chunks"]] for d in docs["local"]]
    assert [d.get("anchors") for d in docs["ray"]] == [d.get("anchors") for d in docs["local"]] and docs["ray"][0]["anchors"]
    assert [d["batched"] for d in docs["ray"]] == [len(d["chunks"]) for d in docs["ray"]]  # all of it rendered on Ray
    assert codes(tmp_path / "ray" / "cache") == codes(tmp_path / "local" / "cache")  # the same frames, anchors and chunks alike
    # the codec decodes them with one torch thread per actor here and two in this process: float rounding only
    assert all(a.size and a.shape == b.shape and np.abs(a - b).max() < 1e-3 for a, b in zip(audio["ray"], audio["local"], strict=True))


def codes(cache: Path) -> dict[str, bytes]:
    from higgs_cli.cache import ChunkCache

    store = ChunkCache(cache)
    return {p.stem: store.get(p.stem).state["codes"].tobytes() for p in store.entries()}


def test_work_units_are_the_engines_chains():
    """Ray's units come from the engines' own context (no Ray needed): higgs chains, one chunk each for piper."""
    from higgs_cli import engines
    from higgs_cli.cluster import _bundles, _groups
    from higgs_cli.engines.higgs import job_chains
    from higgs_cli.options import HiggsSettings, RenderOptions
    from higgs_cli.pipeline import make_plan
    from higgs_cli.transcript import parse_transcript

    text = "".join(f"# Part {n}\n[A] One. Two words here.\n\n[B] Three. Four.\n\n" for n in range(4))
    for words in (0, 3):
        options = RenderOptions(engine="higgs", chunk="sentence", voices={"A": "joe", "B": "ava"}, higgs=HiggsSettings(chain_words=words))
        plan = make_plan(parse_transcript(text), options, "higgs")
        assert _groups(engines.engine_class("higgs"), plan) == job_chains(plan) and len(job_chains(plan)) >= 4
    piper = make_plan(parse_transcript(text), RenderOptions(engine="piper", chunk="sentence"), "piper")
    assert _groups(engines.engine_class("piper"), piper) == [[i] for i in range(len(piper.chunks))]
    chains = [[(0, i)] for i in range(5)]
    assert [len(b) for b in _bundles(chains, 4, 1)] == [4, 1]  # one worker: full batches
    assert [len(b) for b in _bundles(chains, 4, 3)] == [2, 2, 1]  # three workers: spread before filling a batch
    assert _bundles(chains, 1, 3) == chains
