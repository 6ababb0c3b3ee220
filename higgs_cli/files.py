"""Output file safety: temp names that carry the writer's pid, sweeping a killed run's leftovers, and never writing over an input.

Every output is written to `.NAME.<pid>.<random><suffix>` beside it and renamed into place. A run
killed with SIGKILL cannot clean up, so the next run writing NAME removes the temp files of NAME
whose writer process no longer exists (a live concurrent writer's files are left alone).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from .errors import OutputError

_RANDOM = r"[a-z0-9_]{8}"  # what tempfile.mkstemp puts in a name
_UNOWNED_GRACE_S = 3600.0  # temp files without a pid (older versions) are swept once this old


def temp_path(path: Path, suffix: str) -> Path:
    """A new, empty temp file beside `path`, named after it and this process."""
    folder = Path(path).parent if str(Path(path).parent) else Path(".")
    fd, name = tempfile.mkstemp(prefix=f".{Path(path).name}.{os.getpid()}.", suffix=suffix, dir=folder)
    os.close(fd)
    return Path(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def sweep_stale(path: Path) -> list[Path]:
    """Remove temp files of `path` left by writers that died (SIGKILL, power loss); returns what was removed."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    name = re.escape(path.name)
    # ours: .NAME.PID.RANDOM.ext (a temp of a temp gains a second leading dot), or an older .NAME.RANDOM.partial
    pattern = re.compile(rf"^\.\.?{name}\.(?:(\d+)\.{_RANDOM}\.[A-Za-z0-9_.]+|{_RANDOM}\.partial)$")
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or not entry.is_file():
            continue
        pid = m.group(1)
        try:
            stale = not _alive(int(pid)) if pid else time.time() - entry.stat().st_mtime > _UNOWNED_GRACE_S
            if stale:
                entry.unlink()
                removed.append(entry)
        except (OSError, ValueError):
            continue
    return removed


_TEMP = re.compile(rf"^\.\.?(?P<name>.+?)\.\d+\.{_RANDOM}\.[A-Za-z0-9_.]+$")


def shown_name(path: Path) -> Path:
    """The output a temp file stands for (`.out.wav.123.ab12cd34.staged.wav` -> `out.wav`), for messages."""
    m = _TEMP.match(Path(path).name)
    return Path(path).with_name(m.group("name")) if m else Path(path)


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (following links), also when `a` does not exist yet."""
    try:
        if Path(a).exists() and Path(b).exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return Path(os.path.abspath(a)) == Path(os.path.abspath(b))


def check_not_input(output: Path, inputs: Mapping[str, Path | str | None], what: str = "output") -> None:
    """Refuse an output path that is one of the job's inputs (writing it would destroy the input)."""
    for label, source in inputs.items():
        if source is None or str(source) in ("", "-"):
            continue
        if same_file(Path(output), Path(source)):
            raise OutputError(f"{output}: the {what} is also the {label}; writing it would destroy that file; choose another {what} name")


def check_writable(path: Path, label: str, error: type[Exception] = OutputError) -> None:
    """Before any work: the file at `path` could be created or replaced (its folder exists and is writable)."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise error(f"{label} {path}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise error(f"{label} {path}: cannot write in {parent} (permission denied); choose another folder")
