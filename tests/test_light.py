"""The light install: without torch, `higgs engines` names the command that adds the higgs engine.

(That `make demo` renders without torch is measured on a fresh clone's light install: BENCHMARKS.md, "Install size
and time". Hiding an installed torch inside one process is not a faithful stand-in: scipy looks for it by name.)"""

import os
import subprocess
import sys

NO_TORCH = "import sys\nfor name in ('torch', 'torchaudio', 'transformers'):\n    sys.modules[name] = None  # as if not installed\n"


def _higgs_without_torch(*args: str) -> subprocess.CompletedProcess:
    code = NO_TORCH + f"from higgs_cli.cli import app\napp({list(args)!r}, prog_name='higgs')\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=300)


def test_engines_without_torch_names_the_install_command():
    done = _higgs_without_torch("engines")
    assert done.returncode == 0, done.stderr
    assert 'pip install "higgs-cli[higgs]"' in done.stdout and "make install-higgs" in done.stdout

