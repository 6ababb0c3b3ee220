"""Signals with real processes: SIGTERM unwinds like Ctrl-C, --jobs workers die with their parent (even on kill -9),
and the next run sweeps a killed run's temp files and gives the same audio."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from higgs_cli.cache import ChunkCache

ROOT = Path(__file__).resolve().parents[1]
TEXT = " ".join(f"Sentence number {i} is here." for i in range(12))

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the worker processes")


def _start(out: Path, cache: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "HIGGS_CACHE_DIR": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "higgs_cli", "generate", "--text", TEXT, "-o", str(out), "--chunk", "sentence",
                             "--engine", "piper", "--jobs", "2", *extra], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _children(pid: int) -> list[int]:
    kids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            kids.append(int(status.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _after_chunks(proc: subprocess.Popen, cache: Path, n: int) -> list[int]:
    """Wait until `n` chunks are cached (workers are busy), then return the process's children."""
    deadline = time.monotonic() + 120
    while len(ChunkCache(cache).entries()) < n and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()[1]
    return _children(proc.pid)


def _all_gone(pids: list[int], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(_alive(p) for p in pids)


@pytest.mark.parametrize(("sig", "code", "says"), [(signal.SIGTERM, 143, "stopped by SIGTERM"), (signal.SIGINT, 130, "interrupted")])
def test_sigterm_or_ctrl_c_with_jobs_exits_cleanly_says_so_and_leaves_nothing(tmp_path, sig, code, says):
    proc = _start(tmp_path / "out.wav", tmp_path / "cache")
    workers = _after_chunks(proc, tmp_path / "cache", 2)
    assert len(workers) >= 2
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert says in stderr and "no output was written" in stderr and "Traceback" not in stderr
    assert _all_gone(workers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_kill_9_takes_the_workers_along_and_the_rerun_sweeps_and_matches(tmp_path):
    cache = tmp_path / "cache"
    proc = _start(tmp_path / "out.wav", cache)
    workers = _after_chunks(proc, cache, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert _all_gone(workers)  # PR_SET_PDEATHSIG: no orphan keeps rendering
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith((".out.wav", "..out.wav"))]
    assert leftovers  # a SIGKILLed process cannot clean up; the next run must
    rerun = _start(tmp_path / "out.wav", cache)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out.wav"]
    fresh = _start(tmp_path / "fresh.wav", cache, "--no-cache", "--jobs", "1")
    assert fresh.wait(timeout=300) == 0
    assert (tmp_path / "out.wav").read_bytes() == (tmp_path / "fresh.wav").read_bytes()


def test_a_live_writers_temp_files_are_not_swept(tmp_path):
    from higgs_cli.files import sweep_stale, temp_path

    mine = temp_path(tmp_path / "a.wav", ".partial")  # this process is alive
    dead = tmp_path / f".a.wav.{2**22 + 12345}.abcd1234.partial"  # beyond pid_max on most systems: no such process
    dead.write_bytes(b"x")
    user = tmp_path / ".a.wav.backup.wav"  # not ours: never touched
    user.write_bytes(b"x")
    assert sweep_stale(tmp_path / "a.wav") == [dead]
    assert mine.exists() and user.exists() and not dead.exists()


def test_a_file_size_limit_mid_render_is_named_and_leaves_nothing(tmp_path):
    """Like a full disk: the write fails part way; one line names it, and neither the output nor a temp file remains."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))  # ~0.8 s of 16-bit audio at 24 kHz

    out = tmp_path / "out.wav"
    proc = subprocess.run([sys.executable, "-m", "higgs_cli", "generate", "--text", "This sentence is long enough to pass forty kilobytes.",
                           "-o", str(out), "--engine", "espeak", "--no-cache", "-q"], cwd=ROOT, capture_output=True, text=True,
                          preexec_fn=limit, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "out.wav: the file reached" in lines[0] and "size limit" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_a_subtitles_folder_removed_mid_render_leaves_no_audio(tmp_path):
    """The audio is renamed into place only after the subtitles are written: a late failure leaves neither."""
    import shutil

    from higgs_cli.errors import OutputError
    from higgs_cli.options import RenderOptions
    from higgs_cli.pipeline import make_plan, render
    from higgs_cli.transcript import parse_transcript

    subs = tmp_path / "subs"
    subs.mkdir()
    plan = make_plan(parse_transcript("One sentence.\n\nAnother one.\n"), RenderOptions(engine="espeak"), "espeak")
    with pytest.raises(OutputError, match="subs"):
        render(plan, tmp_path / "out.wav", on_progress=lambda p: shutil.rmtree(subs, ignore_errors=True), subtitles=subs / "out.srt")
    assert list(tmp_path.iterdir()) == []


# A Ctrl-C that lands while onnx's nanobind extension runs Python code during its import (it builds enums)
# used to abort the process ("terminate called after throwing ... nanobind::python_error", exit -6): CI saw it.
# The audit hook arms a profiler when that import starts; the profiler sends SIGINT at its first enum call.
_CTRL_C_INSIDE_ONNX_IMPORT = """
import os, signal, sys
fired = []
def audit(event, args):
    if event == "import" and args[0] == "onnx.onnx_cpp2py_export" and not fired:
        sys.setprofile(profile)
def profile(frame, event, arg):
    if event == "call" and frame.f_code.co_filename.endswith("enum.py") and not fired:
        fired.append(1); sys.setprofile(None); os.kill(os.getpid(), signal.SIGINT)
sys.addaudithook(audit)
from higgs_cli.engines import create
try:
    create("piper")
except KeyboardInterrupt:
    print("stopped after the import" if fired and "onnx" in sys.modules else "stopped elsewhere")
    sys.exit(130)
print("never interrupted", fired)
"""


def test_ctrl_c_inside_a_native_import_stops_cleanly_instead_of_aborting():
    proc = subprocess.run([sys.executable, "-c", _CTRL_C_INSIDE_ONNX_IMPORT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout.strip()) == (130, "stopped after the import"), proc.stderr[-800:]
    assert "terminate called" not in proc.stderr


def test_held_signals_arrive_when_the_block_ends_with_their_own_handlers():
    from higgs_cli.interrupts import held

    got: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        with pytest.raises(KeyboardInterrupt):
            with held():
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                assert got == []  # nothing delivered inside the block
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with held():
            os.kill(os.getpid(), signal.SIGTERM)
        assert got == [signal.SIGTERM]  # the SIGTERM handler is back and ran once
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_heavy_import_from_two_threads_gives_both_the_finished_module(tmp_path, monkeypatch):
    # the server's threads resample at once: one used to get soxr half-initialised ("has no attribute 'resample'")
    import threading

    from higgs_cli.interrupts import heavy_import

    (tmp_path / "slow_native_mod.py").write_text("import time\ntime.sleep(0.5)\nDONE = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    got: list[bool] = []

    def load() -> None:
        got.append(getattr(heavy_import("slow_native_mod"), "DONE", False))

    threads = [threading.Thread(target=load) for _ in range(2)]
    threads[0].start()
    time.sleep(0.2)  # the first thread is inside the module's import now
    threads[1].start()
    for t in threads:
        t.join()
    sys.modules.pop("slow_native_mod", None)
    assert got == [True, True]
