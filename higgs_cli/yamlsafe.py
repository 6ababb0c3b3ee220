"""Bounded YAML reading for every YAML file we load (voice profiles, project files, lexicons).

`yaml.safe_load` builds an aliased node once and shares it, so a "billion laughs" file loads
quickly, but anything that then walks the data (printing, JSON, hashing) expands it exponentially
and spins for hours. Here the document is composed first (linear in its text), the node graph is
walked as it would be expanded, and the file is refused once that walk passes YAML_MAX_NODES or
meets a recursive alias; only then is it constructed. Files over YAML_MAX_BYTES are refused unread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UsageError

YAML_MAX_BYTES = 1 << 20  # a profile or book file is a few KB; anything near this is a mistake or an attack
YAML_MAX_NODES = 100_000  # nodes after expanding aliases


class YamlError(UsageError):
    """A YAML file is unreadable, malformed, too large or expands too far."""


def _loader_class() -> Any:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _expanded_size(root: Any, limit: int) -> int:
    """Nodes the document holds once every alias is expanded, stopping early past `limit`; raises on a cycle."""
    import yaml

    count, stack, open_nodes = 0, [(root, False)], set()
    while stack:
        node, leaving = stack.pop()
        if leaving:
            open_nodes.discard(id(node))
            continue
        if id(node) in open_nodes:
            raise ValueError("a recursive alias (a node that contains itself)")
        count += 1
        if count > limit:
            return count
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            continue
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(children))
    return count


def load_yaml(text: str, source: str = "<yaml>", max_nodes: int = YAML_MAX_NODES) -> Any:
    """Parse one YAML document with aliases bounded; `source` names the file in errors."""
    import yaml

    if len(text) > YAML_MAX_BYTES:
        raise YamlError(f"{source}: YAML file is larger than {YAML_MAX_BYTES >> 10} KB; a profile or project file is a few KB")
    loader = _loader_class()(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            size = _expanded_size(node, max_nodes)
        except ValueError as e:
            raise YamlError(f"{source}: YAML holds {e}; remove the anchor (&) or alias (*)") from None
        if size > max_nodes:
            raise YamlError(f"{source}: YAML expands to more than {max_nodes} values through its aliases (*); "
                            "write the values out or remove the aliases")
        _refuse_duplicate_keys(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise YamlError(f"{source}: not valid YAML ({_describe(e)}); fix the file") from e
    finally:
        loader.dispose()


def _refuse_duplicate_keys(root: Any, source: str) -> None:
    """A key written twice in one mapping would silently keep only the last value: refuse it, naming both lines."""
    import yaml

    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if key.value in keys:
                        raise YamlError(f"{source}: line {line}: {key.value!r} is already given on line {keys[key.value]}; keep one")
                    keys[key.value] = line
                stack += [key, value]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value


def _describe(error: Exception) -> str:
    """`line N: problem` for a marked YAML error, else its first line."""
    mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
    if mark is not None and problem:
        return f"line {mark.line + 1}: {problem}"
    return (str(error).splitlines() or [error.__class__.__name__])[0]


def read_yaml(path: Path, max_nodes: int = YAML_MAX_NODES) -> Any:
    """Read and parse a YAML file (UTF-8), refusing oversized files before reading them."""
    path = Path(path)
    try:
        if path.stat().st_size > YAML_MAX_BYTES:
            raise YamlError(f"{path}: YAML file is larger than {YAML_MAX_BYTES >> 10} KB; a profile or project file is a few KB")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as e:
        raise YamlError(f"{path}: file not found; check the path") from e
    except UnicodeDecodeError as e:
        raise YamlError(f"{path}: not UTF-8 text; save the file as UTF-8") from e
    except OSError as e:
        raise YamlError(f"{path}: cannot read ({e.strerror}); check the path and permissions") from e
    return load_yaml(text, str(path), max_nodes)
