"""The content-addressed chunk store: rendered chunks keyed by everything that decides their audio.

Entries are `.npz` files written to a temp name and renamed into place, so concurrent writers
(`make -j`, `--jobs`) and a kill at any moment never leave a half-written entry under a real key.
Each entry carries a SHA-256 of its payload; an entry that fails to load or to verify is deleted
and re-rendered, never used.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    if os.environ.get("HIGGS_CACHE_DIR"):
        return Path(os.environ["HIGGS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "higgs" / "chunks"


def cache_problem(root: Path) -> str | None:
    """Why chunks could not be stored under `root` (it is a file, read-only, ...), creating it if needed; None when fine."""
    if root.exists() and not root.is_dir():
        return "is a file, not a folder"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot be created ({e.strerror})"
    if not os.access(root, os.W_OK | os.X_OK):
        return "is not writable"
    return None


def make_key(parts: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of `parts` (sorted keys, no whitespace)."""
    blob = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def file_digest(path: Path, _memo: dict[tuple[str, int, int], str] = {}) -> str:  # noqa: B006 - per-process memo
    """SHA-256 of a file, memoised on (path, size, mtime) so repeated jobs hash each clip once."""
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo_key not in _memo:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _memo[memo_key] = digest.hexdigest()
    return _memo[memo_key]


@dataclass
class Entry:
    """A cached chunk: audio at the job rate, the engine's manifest info, and optional engine state."""

    audio: np.ndarray
    info: dict[str, Any]
    state: dict[str, np.ndarray]


def _payload_digest(arrays: dict[str, np.ndarray], meta: bytes) -> str:
    digest = hashlib.sha256(meta)
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


class ChunkCache:
    """A folder of entries `ab/abcdef....npz`; a `None` root disables caching."""

    def __init__(self, root: Path | None):
        self.root = root

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def has(self, key: str) -> bool:
        return self.enabled and self._path(key).is_file()

    def get(self, key: str) -> Entry | None:
        if not self.enabled:
            return None
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            entry = self._load(path)
        except Exception as e:  # noqa: BLE001 - any damage means "render again"
            log.warning("discarding corrupt cache entry %s (%s)", path.name, e)
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # recency for `cache prune --max-size`
        return entry

    @staticmethod
    def _load(path: Path) -> Entry:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = arrays.pop("meta").tobytes()
        stored = arrays.pop("sha256").tobytes().decode()
        if _payload_digest(arrays, meta) != stored:
            raise ValueError("checksum mismatch")
        audio = arrays.pop("audio").astype(np.float32, copy=False)
        state = {name.removeprefix("state_"): value for name, value in arrays.items()}
        return Entry(audio, json.loads(meta), state)

    def put(self, key: str, entry: Entry) -> None:
        if not self.enabled:
            return
        arrays = {"audio": np.asarray(entry.audio, dtype=np.float32)}
        arrays.update({f"state_{k}": np.asarray(v) for k, v in entry.state.items()})
        meta = json.dumps(entry.info, sort_keys=True, default=str).encode()
        digest = _payload_digest(arrays, meta)
        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(meta, dtype=np.uint8), sha256=np.frombuffer(digest.encode(), dtype=np.uint8), **arrays)
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def entries(self) -> list[Path]:
        if not self.enabled or not self.root.is_dir():
            return []
        return sorted(self.root.glob("??/*.npz"))

    def info(self) -> dict[str, Any]:
        files = self.entries()
        stats = [f.stat() for f in files]
        now = time.time()
        return {
            "path": str(self.root),
            "entries": len(files),
            "bytes": sum(s.st_size for s in stats),
            "oldest_days": round((now - min(s.st_mtime for s in stats)) / 86400, 2) if stats else None,
            "newest_days": round((now - max(s.st_mtime for s in stats)) / 86400, 2) if stats else None,
        }

    def prune(self, max_age_days: float | None = None, max_bytes: int | None = None) -> tuple[int, int]:
        """Delete entries unused for `max_age_days`, then least recently used ones beyond `max_bytes`."""
        files = sorted(((f, f.stat()) for f in self.entries()), key=lambda fs: fs[1].st_mtime)
        now, removed, freed = time.time(), 0, 0
        total = sum(s.st_size for _, s in files)
        for f, s in files:
            too_old = max_age_days is not None and now - s.st_mtime > max_age_days * 86400
            too_big = max_bytes is not None and total > max_bytes
            if too_old or too_big:
                f.unlink(missing_ok=True)
                removed, freed, total = removed + 1, freed + s.st_size, total - s.st_size
        for tmp in self.root.glob("??/.*.tmp") if self.enabled and self.root.is_dir() else []:
            if now - tmp.stat().st_mtime > 3600:  # leftovers of killed writers
                tmp.unlink(missing_ok=True)
        return removed, freed

    def clear(self) -> tuple[int, int]:
        return self.prune(max_age_days=-1)
