"""`higgs generate ... -o -`: audio on stdout as chunks finish, messages on stderr, the same samples as a file."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import numpy as np
import soundfile as sf

TEXT = "The first paragraph is short.\n\nThe second one follows.\n\nAnd a third closes it."


def _higgs(*args: str, **kw: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "higgs_cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ}, **kw)


def test_stdout_stream_is_the_file_render_and_arrives_chunk_by_chunk(tmp_path):
    out = tmp_path / "file.wav"
    cache = str(tmp_path / "cache")
    proc = _higgs("generate", "--text", TEXT, "-e", "piper", "-o", "-", "--cache", cache)
    arrivals = []
    assert proc.stdout is not None
    while block := proc.stdout.read1(1 << 16):
        arrivals.append((time.monotonic(), block))
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.wait() == 0, stderr
    data = b"".join(b for _, b in arrivals)
    assert data[:4] == b"RIFF" and data[4:8] == b"\xff\xff\xff\xff"  # a streaming header: the length is not known yet
    assert "streamed" in stderr and "stdout" in stderr  # messages stay on stderr
    streamed, rate = sf.read(io.BytesIO(data), dtype="float32")
    done = subprocess.run([sys.executable, "-m", "higgs_cli", "generate", "--text", TEXT, "-e", "piper", "-o", str(out),
                           "--cache", cache, "-q", "--loudness", "off"], capture_output=True)  # a stream keeps the level as rendered
    assert done.returncode == 0, done.stderr
    written, _ = sf.read(out, dtype="float32")
    assert rate == 24000 and np.array_equal(streamed, written)
    assert len(arrivals) >= 2 and arrivals[-1][0] > arrivals[0][0]  # more than one write: chunk by chunk


def test_raw_pcm_and_refusals(tmp_path):
    done = subprocess.run([sys.executable, "-m", "higgs_cli", "generate", "--text", "Raw samples.", "-e", "piper", "-o", "-",
                           "--audio-format", "pcm", "--no-cache", "-q"], capture_output=True)
    assert done.returncode == 0 and len(done.stdout) % 2 == 0 and len(done.stdout) > 24000
    assert done.stdout[:4] != b"RIFF"
    from typer.testing import CliRunner

    from higgs_cli.cli import app

    runner = CliRunner()
    for args, message in ((["--loudness", "podcast"], "needs the whole programme"), (["--json"], "drop one of them"),
                          (["--audio-format", "ogg"], "--audio-format 'ogg'")):
        bad = runner.invoke(app, ["generate", "--text", "Hi.", "-e", "piper", "-o", "-", *args])
        assert bad.exit_code == 2 and message in bad.output, bad.output
    wrong = runner.invoke(app, ["generate", "--text", "Hi.", "-e", "piper", "-o", str(tmp_path / "a.wav"), "--audio-format", "mp3"])
    assert wrong.exit_code == 2 and "-o - only" in wrong.output and not (tmp_path / "a.wav").exists()
