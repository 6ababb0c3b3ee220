"""Bounded YAML: alias bombs, recursive aliases and oversized files are refused quickly; ordinary anchors still work."""

import os
import subprocess
import sys
import time

import pytest

from higgs_cli.build import load_project
from higgs_cli.yamlsafe import YAML_MAX_BYTES, YamlError, load_yaml, read_yaml


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The classic "billion laughs": each level lists the previous one `width` times (width**levels values)."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "description: bomb\n" + "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_fast():
    started = time.monotonic()
    with pytest.raises(YamlError, match="expands to more than"):
        load_yaml(alias_bomb(), "bomb.yaml")
    assert time.monotonic() - started < 2.0


def test_recursive_alias_is_refused():
    with pytest.raises(YamlError, match="recursive alias"):
        load_yaml("a: &a [1, *a]\n", "loop.yaml")


def test_ordinary_anchors_and_plain_documents_load():
    assert load_yaml("base: &b {pitch: 1.1}\nother: *b\n") == {"base": {"pitch": 1.1}, "other": {"pitch": 1.1}}
    assert load_yaml("") is None


def test_syntax_errors_name_the_line(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("description: ok\nengines: [\n")
    with pytest.raises(YamlError, match=r"p\.yaml: not valid YAML \(line 3"):
        read_yaml(path)


def test_oversized_file_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("x: " + "a" * (YAML_MAX_BYTES + 10) + "\n")
    with pytest.raises(YamlError, match="larger than"):
        read_yaml(path)


def test_alias_bomb_profile_does_not_hang_voices_show_json(tmp_path):
    folder = tmp_path / "voices"
    folder.mkdir()
    (folder / "bomb.yaml").write_text(alias_bomb())
    env = {**os.environ, "HIGGS_VOICES_DIR": str(folder)}
    proc = subprocess.run([sys.executable, "-m", "higgs_cli", "voices", "show", "bomb", "--json"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "expands to more than" in proc.stderr and "bomb.yaml" in proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_bomb_in_a_project_field_is_refused_before_unknown_field_checks(tmp_path):
    (tmp_path / "ch1.txt").write_text("Hello.\n")
    book = tmp_path / "book.yaml"
    inner = alias_bomb().replace("description: bomb\n", "").replace("\n", "\n  ")
    book.write_text("chapters: [ch1.txt]\nvoices:\n  " + inner)
    with pytest.raises(YamlError, match="expands to more than"):
        load_project(book)
