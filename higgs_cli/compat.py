"""transformers API drift bridged in one place: what changed between the versions the fast decoder meets.

5.24 renamed the KV cache argument and output field of model forwards from `past_key_values` to `cache`
(the old name warns until its removal, announced for 5.40). Both spellings work here.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any


def cache_kwarg(module: Any) -> str:
    """The name `module.forward` takes its KV cache under (decorators keep the real signature via __wrapped__)."""
    return _cache_kwarg(type(module))


@functools.cache
def _cache_kwarg(cls: type) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def returned_cache(output: Any) -> Any:
    """The cache a forward returned, under either name."""
    found = output.get("cache") if hasattr(output, "get") else getattr(output, "cache", None)
    return found if found is not None else output.past_key_values
