"""`higgs serve` (the OpenAI-compatible speech server) and `-o -` (audio to stdout as chunks finish): the command-line side."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import OutputError, UsageError
from .options import LOOPBACK_HOSTS, QA_RETAKES, SERVE_HOST, SERVE_MAX_BODY_BYTES, SERVE_MAX_INPUT_CHARS, SERVE_PORT, SERVE_TIMEOUT, SERVE_WAITING

_H = "Higgs engine"
_Q = "Quality gate"


# --- -o - --------------------------------------------------------------------------------------------
def check_stdout_job(options: Any, to_stdout: bool, audio_format: str | None, dry_run: bool, as_json: bool,
                     subtitles: Path | None, stems: Path | None) -> None:
    """Refuse, before anything renders, what cannot stream: finishing passes, --json beside audio, a terminal."""
    from .encoders import STREAM_FORMATS

    if not to_stdout:
        raise UsageError("--audio-format applies to -o - only; for a file the extension picks the format")
    if audio_format is not None and audio_format not in STREAM_FORMATS:
        raise UsageError(f"--audio-format {audio_format!r}: use one of {', '.join(STREAM_FORMATS)}")
    if dry_run:
        return
    if as_json:
        raise UsageError("--json prints the manifest on stdout, where -o - writes the audio; drop one of them")
    from .mixing import resolve_loudness
    from .options import DEFAULT_LOUDNESS

    # the default programme level needs the whole programme too; a stream keeps the level as rendered (peaks still limited)
    loudness = options.finish.loudness not in (None, DEFAULT_LOUDNESS) and resolve_loudness(options.finish.loudness) is not None
    finishing = [flag for flag, on in (("--music", options.music), ("--loudness", loudness),
                                       ("--subtitles", subtitles), ("--stems", stems)) if on]
    if finishing:
        raise UsageError(f"-o - streams the speech as it renders, but {finishing[0]} needs the whole programme; write to a file instead")
    if sys.stdout.isatty():
        raise OutputError("-o - writes audio to stdout, which is a terminal; pipe it (| ffplay -) or give a file name")


def stream_stdout(plan: Any, fmt: str, cache: Any, jobs: int, on_progress: Callable[[Any], None] | None) -> float:
    """Render the plan to stdout as chunks finish; returns the seconds written."""
    from .encoders import Encoder
    from .options import SAMPLE_RATE
    from .pipeline import stream

    if any(c.kind == "music" for chunk in plan.chunks for c in chunk.controls_before + chunk.controls_after):
        raise UsageError("-o - streams the speech as it renders, but this transcript's [music] cues need the whole programme; "
                         "write to a file instead")
    out, encoder, frames = sys.stdout.buffer, Encoder(fmt), 0
    try:
        for piece in stream(plan, cache, jobs, on_progress):
            frames += len(piece)
            _put(out, encoder.write(piece))
        _put(out, encoder.close())
    except BrokenPipeError:
        encoder.abort()
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        raise OutputError("stdout was closed before the audio ended (the reader quit); rendered chunks are cached") from None
    except BaseException:
        encoder.abort()
        raise
    return frames / SAMPLE_RATE


def _put(out: Any, data: bytes) -> None:
    if data:
        out.write(data)
        out.flush()


# --- higgs serve -------------------------------------------------------------------------------------
def serve_cmd(
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs an API key.")] = SERVE_HOST,
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0 picks a free one).")] = SERVE_PORT,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="HIGGS_API_KEY", show_envvar=True, show_default=False,
                                                help="Clients must send 'Authorization: Bearer KEY'.")] = None,
    insecure_public: Annotated[bool, typer.Option("--insecure-public", help="Listen beyond loopback without an API key.")] = False,
    engine: Annotated[str, typer.Option("--engine", "-e", help="auto, higgs, piper or espeak.")] = "auto",
    workers: Annotated[int, typer.Option(min=1, max=64, help="CPU engines: warm engines rendering chunks side by side.")] = 2,
    max_concurrent: Annotated[int, typer.Option("--max-concurrent", min=1, max=1024, help="Requests rendering at once.")] = 4,
    max_waiting: Annotated[int, typer.Option("--max-waiting", min=0, max=10000, help="Requests waiting for a place; beyond it: 429.")] = SERVE_WAITING,
    max_input_chars: Annotated[int, typer.Option("--max-input-chars", min=1, help="Longest `input` accepted (400 beyond).")] = SERVE_MAX_INPUT_CHARS,
    max_body: Annotated[int, typer.Option("--max-body-bytes", min=1024, help="Largest request body (413 beyond).")] = SERVE_MAX_BODY_BYTES,
    timeout: Annotated[float, typer.Option(min=1.0, help="Seconds a request may take once admitted (504 after).")] = SERVE_TIMEOUT,
    cache_dir: Annotated[Path | None, typer.Option("--cache", help="Chunk cache folder (default: ~/.cache/higgs/chunks).", show_default=False)] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Render every request afresh into a temporary store.")] = False,
    model: Annotated[str | None, typer.Option(help="higgs: model hub id or local dir.", rich_help_panel=_H, show_default=False)] = None,
    codec: Annotated[str | None, typer.Option(help="higgs: audio tokenizer hub id or local dir.", rich_help_panel=_H, show_default=False)] = None,
    device: Annotated[str, typer.Option(help="higgs: auto, cuda, cuda:N or cpu.", rich_help_panel=_H)] = "auto",
    batch: Annotated[int | None, typer.Option(help="higgs: decoder rows shared by all requests' chains.", rich_help_panel=_H, show_default=False)] = None,
    temperature: Annotated[float | None, typer.Option(help="higgs: sampling temperature for every request.", rich_help_panel=_H, show_default=False)] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="higgs: top-k for every request.", rich_help_panel=_H, show_default=False)] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", help="higgs: top-p for every request.", rich_help_panel=_H, show_default=False)] = None,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", help="higgs: max audio frames per chunk.", rich_help_panel=_H, show_default=False)] = None,
    qa: Annotated[str, typer.Option("--qa", rich_help_panel=_Q,
                                    help="Hear every served chunk with Whisper before it is sent: off, report, retake (send the best take), "
                                         "strict (a chunk that still fails fails the request), or auto (retake for higgs, off for the CPU engines).")] = "auto",
    retakes: Annotated[int, typer.Option("--retakes", rich_help_panel=_Q, help="Extra takes of a failing chunk (retake/strict).")] = QA_RETAKES,
    qa_model: Annotated[str | None, typer.Option("--qa-model", rich_help_panel=_Q, show_default=False,
                                                 help="Whisper for the gate: hub id or local CTranslate2 dir (default: bundled tiny.en).")] = None,
) -> None:
    """Serve speech over HTTP: OpenAI's POST /v1/audio/speech (streaming too) and a voice library, on one warm engine."""
    from . import engines
    from .cli_check import qa_options
    from .engines.higgs import validate_settings
    from .options import HiggsSettings, ServeOptions
    from .server_qa import ServerGate

    given = {"model": model, "codec": codec, "device": device, "batch": batch, "temperature": temperature, "top_k": top_k,
             "top_p": top_p, "max_new_tokens": max_new_tokens}
    higgs = replace(HiggsSettings(), **{k: v for k, v in given.items() if v is not None})
    validate_settings(higgs)
    if host not in LOOPBACK_HOSTS and not api_key and not insecure_public:
        raise UsageError(f"refusing to listen on {host} without an API key; set --api-key (or $HIGGS_API_KEY), "
                         "or pass --insecure-public if the network is yours")
    name, note = engines.choose(engine, higgs)
    options = ServeOptions(engine=name, host=host, port=port, api_key=api_key or None, insecure_public=insecure_public,
                           workers=workers, max_concurrent=max_concurrent, max_waiting=max_waiting, max_input_chars=max_input_chars,
                           max_body_bytes=max_body, timeout=timeout, cache_dir=cache_dir, no_cache=no_cache, higgs=higgs,
                           qa=qa_options(qa, retakes, qa_model))
    ServerGate(options.qa, name, higgs).load()  # a missing recogniser or a bad --qa-model: one line and exit 2, before listening
    check_address(host, port)
    run(options, note)


def check_address(host: str, port: int) -> None:
    """Before the engine loads: the address can be listened on (uvicorn would load the engine, then exit 3, which is
    the quality gate's code, with its own message)."""
    import errno
    import socket

    try:
        family, kind, proto, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise UsageError(f"--host {host}: not an address this machine can listen on ({e}); use 127.0.0.1, 0.0.0.0 or one of its IPs") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(where)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UsageError(f"--port {port}: {host}:{port} is already in use (another server?); stop it or pick another --port") from None
            raise UsageError(f"--host {host} --port {port}: cannot listen there ({e.strerror}); pick another address or port") from None


def run(options: Any, note: str | None = None) -> None:
    """Run the server in this process until Ctrl-C (uvicorn; its own access log off: ours is JSON on stderr)."""
    import logging

    try:
        import uvicorn

        from .server import create_app
    except ImportError as e:
        raise UsageError(f"the server needs FastAPI and uvicorn ({e.name} is missing); install them with "
                         "`pip install 'higgs-cli[serve]'`") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    if note:
        logging.getLogger("higgs.server").info(note)
    app = create_app(options)
    uvicorn.run(app, host=options.host, port=options.port, access_log=False, log_level="info", timeout_graceful_shutdown=5)
