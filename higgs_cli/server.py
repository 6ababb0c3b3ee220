"""The OpenAI-compatible speech server: a FastAPI app over the CLI's pipeline (voices, chunking, cache, finishing).

`create_app(options)` builds it; `higgs serve` runs it under uvicorn. Requests become Plans
(server_requests.py), a Scheduler renders their chunks on warm engines (serving.py), and responses are either
the whole file (pipeline.render, exactly what the CLI writes) or, with `stream_format`, audio as each chunk
lands (`audio`: bytes; `sse`: speech.audio.delta / speech.audio.done events). Every error is OpenAI's envelope.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from .cache import ChunkCache, default_cache_dir
from .encoders import MEDIA_TYPES, Encoder, encode
from .errors import HiggsError, UsageError, VoiceError
from .options import ServeOptions
from .server_qa import JobGate, QualityFailed, ServerGate
from .server_requests import BadRequest, api_message, build_plan, library_voice, parse, voice_doc, with_kept_takes
from .serving import Cancelled, Job, QueueFull, Scheduler, scheduler

log = logging.getLogger("higgs.server")


class ApiError(Exception):
    """An HTTP error in OpenAI's envelope."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code, self.headers = status, message, kind, param, code, headers


class BodyTooLarge(Exception):
    pass


def envelope(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
             code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status, headers=headers)


# --- middleware ----------------------------------------------------------------------------------------
class Guard:
    """API key (constant-time compare) on /v1, and the request-body limit (413), before any route runs."""

    def __init__(self, app: Any, api_key: str | None, max_body: int):
        self.app, self.key, self.max_body = app, api_key.encode() if api_key else None, max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.key is not None and scope["path"].startswith("/v1") and not self._authorised(headers.get("authorization", "")):
            response = envelope(401, "missing or wrong API key; send 'Authorization: Bearer KEY'", code="invalid_api_key")
            return await response(scope, receive, send)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return await self._too_large(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise BodyTooLarge
            return message

        await self.app(scope, limited, send)

    def _authorised(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.key or b"")

    async def _too_large(self, scope: dict, receive: Any, send: Any) -> None:
        response = envelope(413, f"request body is larger than {self.max_body} bytes; send a shorter text or a smaller clip",
                            code="request_too_large", headers={"Connection": "close"})
        await response(scope, receive, send)


class AccessLog:
    """One JSON line per request on stderr: when, who, what, status, bytes, time to first byte and to the end."""

    def __init__(self, app: Any, stream: Any = None):
        self.app, self.stream = app, stream

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, first, status, sent = time.monotonic(), None, 0, 0

        async def tracked(message: dict) -> None:
            nonlocal first, status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and message.get("body"):
                sent += len(message["body"])
                first = first or time.monotonic()
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            now = time.monotonic()
            line = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "client": (scope.get("client") or ["?"])[0],
                    "method": scope["method"], "path": scope["path"], "status": status or 499, "bytes": sent,
                    "ms": round((now - start) * 1000, 1), "first_byte_ms": round((first - start) * 1000, 1) if first else None,
                    **scope.get("state", {}).get("log", {})}
            print(json.dumps(line), file=self.stream or sys.stderr, flush=True)


# --- the app -------------------------------------------------------------------------------------------
def create_app(options: ServeOptions, sched: Scheduler | None = None, log_stream: Any = None) -> Any:
    """The ASGI app; loads the engine on a thread at start-up (/health says 503 until it is ready).

    A scheduler passed in (tests, several apps over one engine) is the caller's to start and close."""
    if options.engine == "auto":
        raise UsageError("resolve the engine before creating the app (engines.choose)")
    owned = sched is None
    sched = sched or scheduler(options.engine, options.higgs, options.workers, options.max_concurrent, options.max_waiting)
    cache = None if options.no_cache else ChunkCache(options.cache_dir or default_cache_dir())
    gate = ServerGate(options.qa, options.engine, options.higgs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        def load() -> None:
            try:
                gate.load()
                sched.start()
                log.info("engine %s ready%s", options.engine, f"; quality gate: {gate.mode}" if gate.on else "")
            except BaseException as e:  # noqa: BLE001 - /health reports it
                log.error("engine %s failed to load: %s", options.engine, e)

        if owned:
            threading.Thread(target=load, name="higgs-load", daemon=True).start()
        yield
        if owned:
            sched.close()

    app = FastAPI(title="higgs speech server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.scheduler, app.state.options, app.state.gate = sched, options, gate

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> JSONResponse:
        return envelope(e.status, e.message, e.kind, e.param, e.code, e.headers)

    @app.exception_handler(HiggsError)
    async def _refused(request: Request, e: HiggsError) -> JSONResponse:
        err = _as_api_error(e)
        return envelope(err.status, err.message, err.kind, err.param, err.code, err.headers)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, e: BodyTooLarge) -> JSONResponse:
        return envelope(413, f"request body is larger than {options.max_body_bytes} bytes; send a shorter text or a smaller clip",
                        code="request_too_large", headers={"Connection": "close"})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return envelope(e.status_code, str(e.detail), code="not_found" if e.status_code == 404 else None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid request"}
        return envelope(400, f"{'.'.join(str(p) for p in first['loc'][1:])}: {first['msg']}")

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)
        return envelope(500, f"internal error: {e.__class__.__name__}: {e}", "server_error")

    @app.get("/health")
    async def health() -> JSONResponse:
        if sched.ready.is_set():
            return JSONResponse({"status": "ok", "engine": options.engine, "qa": gate.mode, **sched.load()})
        if sched.load_error is not None:
            return JSONResponse({"status": "error", "engine": options.engine, "error": str(sched.load_error)}, 500)
        return JSONResponse({"status": "loading", "engine": options.engine}, 503, headers={"Retry-After": "5"})

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": options.engine, "object": "model", "created": 0, "owned_by": "higgs"}]}

    @app.post("/v1/audio/speech")
    async def speech(request: Request) -> Response:
        if not sched.ready.is_set():
            raise ApiError(503, "the engine is still loading; retry shortly", "server_error", code="not_ready", headers={"Retry-After": "5"})
        req = parse(await _body(request))
        workdir = Path(tempfile.mkdtemp(prefix="higgs-serve-"))
        job: Job | None = None
        try:
            plan, warnings = await run_in_threadpool(build_plan, req, options, workdir)
            store = cache if cache is not None else _RequestStore(workdir / "chunks")
            plan, takes = await run_in_threadpool(with_kept_takes, plan, store)
            job = sched.submit(plan, store)
            gated = gate.for_job(job, sched, takes)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        request.state.log = {"job": job.id, "engine": options.engine, "chars": len(req.input), "chunks": len(plan.chunks),
                             "cached": len(plan.chunks) - len(job.missing), "format": req.response_format,
                             "stream": req.stream_format}
        headers = {"X-Higgs-Chunks": str(len(plan.chunks)), "X-Higgs-Voices": ", ".join(f"{s}={v.name}" for s, v in plan.cast.items())}
        if warnings:
            headers["X-Higgs-Warning"] = "; ".join(warnings)
        if gated is not None:
            headers["X-Higgs-QA-Mode"] = gate.mode
        deadline = time.monotonic() + options.timeout
        if req.stream_format is None:
            return await _whole(request, sched, job, req.response_format, workdir, deadline, headers, gated)
        media = "text/event-stream" if req.stream_format == "sse" else MEDIA_TYPES[req.response_format]
        body = _streamed(sched, job, req.response_format, req.stream_format == "sse", workdir, deadline, len(req.input.split()),
                         gated, request.state.log)
        return _Stream(body, media_type=media, headers=headers, cleanup=_ender(sched, job, workdir))

    _voice_routes(app, options)
    guarded = Guard(app, options.api_key, options.max_body_bytes)
    return AccessLog(guarded, log_stream)


class _RequestStore(ChunkCache):
    """A request's own chunk store (--no-cache) in its temporary folder. A chunk that lands after the request ended (a
    cancelled request's chunk still on an engine) is dropped instead of re-creating the removed folder."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(root)

    def put(self, key: str, entry: Any) -> None:
        try:
            (self.root / key[:2]).mkdir(exist_ok=True)  # no parents: fails once the request's folder is gone
        except FileNotFoundError:
            return
        super().put(key, entry)


class _Stream(StreamingResponse):
    """A streamed response that ends its job and removes its folder however it ends: also when the client left before
    the body started (a generator that never ran never reaches its `finally`)."""

    def __init__(self, *args: Any, cleanup: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.cleanup = cleanup

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.cleanup()


def _ender(sched: Scheduler, job: Job, workdir: Path) -> Any:
    def end() -> None:
        sched.release(job)  # idempotent: the stream's own `finally` may have done it
        shutil.rmtree(workdir, ignore_errors=True)

    return end


async def _body(request: Request) -> dict[str, Any]:
    """The request's fields: a JSON object, or form fields (files as bytes, `voices` as JSON text)."""
    kind = request.headers.get("content-type", "")
    if kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            fields[key] = await value.read() if isinstance(value, UploadFile) else value
        if isinstance(fields.get("voices"), str):
            try:
                fields["voices"] = json.loads(fields["voices"])
            except json.JSONDecodeError:
                raise ApiError(400, "voices must be a JSON object such as {\"MAYA\": \"ava\"}", param="voices") from None
        return fields
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise ApiError(400, "the body is not valid JSON; send a JSON object with model, input and voice") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object with model, input and voice")
    return body


async def _whole(request: Request, sched: Scheduler, job: Job, fmt: str, workdir: Path, deadline: float,
                 headers: dict[str, str], gated: JobGate | None = None) -> Response:
    """Wait for every chunk (each heard, and retaken, by the gate), then let pipeline.render write the file the CLI
    would; the client leaving cancels. The gate's verdicts go in the X-Higgs-QA header (JSON) and the access log."""
    task = asyncio.ensure_future(run_in_threadpool(_render_whole, job, fmt, workdir, deadline, gated))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            if not task.done() and await request.is_disconnected():
                job.cancel()
        data = await task
    except (Cancelled, TimeoutError, HiggsError) as e:
        raise _as_api_error(e) from None
    finally:
        if gated is not None:
            request.state.log["qa"] = gated.log_doc()
        sched.release(job)
        shutil.rmtree(workdir, ignore_errors=True)
    if gated is not None:
        headers["X-Higgs-QA"] = json.dumps(gated.summary(), separators=(",", ":"))
    return Response(data, media_type=MEDIA_TYPES[fmt], headers=headers)


def _render_whole(job: Job, fmt: str, workdir: Path, deadline: float, gated: JobGate | None = None) -> bytes:
    from .audio import read_audio
    from .pipeline import render

    plan = job.plan
    if gated is not None:
        gated.settle_all(deadline)
        plan = gated.plan  # the kept takes
    else:
        for i in range(len(job.plan.chunks)):
            job.wait(i, deadline)
    out = workdir / "speech.wav"
    render(plan, out, cache=job.store)
    if fmt == "wav":
        return out.read_bytes()
    audio, _ = read_audio(out)
    return encode(audio, fmt)


async def _streamed(sched: Scheduler, job: Job, fmt: str, sse: bool, workdir: Path, deadline: float, words: int,
                    gated: JobGate | None = None, log_doc: dict[str, Any] | None = None) -> AsyncIterator[bytes]:
    """Encoded audio (or SSE events) as chunks land, each after its verdict when the gate is on (the done event
    carries the verdicts as `higgs.qa`); ends the job, and frees its place, however the stream ends."""
    pieces = _encoded(job, fmt, deadline, gated)
    frames = 0
    try:
        while True:
            item = await run_in_threadpool(next, pieces, None)
            if item is None:
                break
            data, frames = item
            if data:
                yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}) if sse else data
        if sse:
            audio_tokens = round(frames / 960)  # 25 codec frames per second at 24 kHz
            yield _event({"type": "speech.audio.done",
                          "usage": {"input_tokens": words, "output_tokens": audio_tokens, "total_tokens": words + audio_tokens},
                          **({"higgs": {"qa": gated.summary()}} if gated is not None else {})})
    except (Cancelled, TimeoutError, HiggsError) as e:
        if not sse:
            raise  # the connection breaks: a truncated stream must not look complete
        err = _as_api_error(e)
        yield _event({"type": "error", "error": {"message": err.message, "type": err.kind, "code": err.code}})
    finally:
        if gated is not None and log_doc is not None:
            log_doc["qa"] = gated.log_doc()
        sched.release(job)  # cancels it first if it is not over
        shutil.rmtree(workdir, ignore_errors=True)


def _encoded(job: Job, fmt: str, deadline: float, gated: JobGate | None = None) -> Iterator[tuple[bytes, int]]:
    """(bytes ready, frames so far) after each piece of speech; nothing before the first chunk has landed (and,
    under the gate, been heard)."""
    from .pipeline import speech_pieces

    encoder, frames = Encoder(fmt), 0
    try:
        for piece in speech_pieces(job.plan, gated.entries(deadline) if gated is not None else job.entries(deadline)):
            frames += len(piece)
            yield encoder.write(piece), frames
        yield encoder.close(), frames
    except BaseException:
        encoder.abort()
        raise


def _event(doc: dict) -> bytes:
    return f"data: {json.dumps(doc)}\n\n".encode()


def _as_api_error(e: BaseException) -> ApiError:
    if isinstance(e, TimeoutError):
        return ApiError(504, "the request took longer than the server's --timeout; send a shorter text or retry", "server_error",
                        code="timeout")
    if isinstance(e, QueueFull):
        return ApiError(429, str(e), "rate_limit_error", code="rate_limit_exceeded", headers={"Retry-After": str(e.retry_after)})
    if isinstance(e, Cancelled):
        return ApiError(499, "the request was cancelled", code="cancelled")
    if isinstance(e, QualityFailed):
        return ApiError(500, str(e), "server_error", code="quality_failed")
    if isinstance(e, BadRequest):
        return ApiError(e.status, str(e), param=e.param)
    if isinstance(e, UsageError):
        return ApiError(400, api_message(str(e)))
    return ApiError(500, f"rendering failed: {e}", "server_error", code="render_failed")


# --- the voice library ---------------------------------------------------------------------------------
def _voice_routes(app: FastAPI, options: ServeOptions) -> None:
    from . import voices

    @app.get("/v1/audio/voices")
    async def list_voices() -> dict:
        found = await run_in_threadpool(voices.library)
        return {"object": "list", "data": [voice_doc(v) for v in found]}

    @app.get("/v1/audio/voices/{name}")
    async def get_voice(name: str) -> dict:
        return voice_doc(await run_in_threadpool(_known_voice, name))

    @app.post("/v1/audio/voices")
    async def add_voice(request: Request) -> JSONResponse:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(400, "upload the clip as multipart/form-data: name, audio_sample (file) and transcript")
        form = await request.form()
        fields = {k: v for k, v in form.multi_items()}
        unknown = sorted(set(fields) - {"name", "audio_sample", "transcript", "description", "gender", "language", "consent",
                                        "type", "force"})
        if unknown:
            raise ApiError(400, f"unknown field {unknown[0]!r}; send name, audio_sample, transcript (description, gender, "
                                "language, force optional)", param=unknown[0])
        clip, name, text = fields.get("audio_sample"), fields.get("name"), fields.get("transcript")
        if not isinstance(clip, UploadFile):
            raise ApiError(400, "audio_sample is missing: attach the clip as a file (3-30 s of clean speech)", param="audio_sample")
        if not isinstance(name, str) or not isinstance(text, str) or not text.strip():
            raise ApiError(400, "name and transcript (the exact words spoken in the clip) are both required",
                           param="transcript" if isinstance(name, str) else "name")
        if fields.get("type", "audio_sample") != "audio_sample":
            raise ApiError(400, "only type 'audio_sample' voices are supported (a clip and its transcript)", param="type")
        data = await clip.read()
        extras = {k: fields[k] for k in ("description", "gender", "language") if isinstance(fields.get(k), str)}
        force = str(fields.get("force", "")).lower() in ("1", "true", "yes")
        voice = await run_in_threadpool(_add_voice, name, data, text, extras, force)
        return JSONResponse(voice_doc(voice), 201)

    @app.delete("/v1/audio/voices/{name}")
    async def delete_voice(name: str) -> dict:
        await run_in_threadpool(_remove_voice, name)
        return {"id": name, "object": "audio.voice.deleted", "deleted": True}


def _known_voice(name: str) -> Any:
    try:
        return library_voice(name)
    except VoiceError as e:
        raise ApiError(404 if "unknown voice" in str(e) else 400, str(e), param="name") from None


def _add_voice(name: str, data: bytes, text: str, extras: dict[str, str], force: bool) -> Any:
    from . import voices

    try:
        voices.check_name(name)
    except VoiceError as e:
        raise ApiError(400, str(e), param="name") from None
    with tempfile.TemporaryDirectory(prefix="higgs-voice-") as tmp:
        clip = Path(tmp) / "upload"
        clip.write_bytes(data)
        try:
            if not force and (voices.user_voices_dir() / f"{name}.wav").exists():
                raise ApiError(409, f"voice {name!r} already exists; send force=true to replace it or pick another name", param="name")
            return voices.add(name, clip, text, force=force, **extras)
        except VoiceError as e:
            if "already exists" in str(e):  # another upload of this name won the race (voices.add checks under a lock)
                raise ApiError(409, f"voice {name!r} already exists; send force=true to replace it or pick another name", param="name") from None
            param = "name" if "bundled voice" in str(e) else "audio_sample"
            raise ApiError(400, api_message(str(e)).replace(str(clip), "audio_sample"), param=param) from None
        except UsageError as e:
            raise ApiError(400, api_message(str(e)).replace(str(clip), "audio_sample"), param="audio_sample") from None


def _remove_voice(name: str) -> None:
    from . import voices

    try:
        voices.remove(name)
    except VoiceError as e:
        status = 403 if "bundled" in str(e) else 404 if "no user voice" in str(e) else 400
        raise ApiError(status, str(e), param="name") from None
