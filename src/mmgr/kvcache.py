"""The key/value cache argument of Hugging Face models, named as the installed transformers names it.

transformers 5 renamed `past_key_values` to `cache` (in `forward` and in the outputs) and warns (a `FutureWarning`
per call site, plus a log line) whenever the old name is used; transformers 4 knows only `past_key_values`. Every
cached decoding loop in mmgr passes and reads the cache through these two helpers, so it never uses a deprecated
name and never needs to silence a warning.
"""

from __future__ import annotations

import inspect
from typing import Any

OLD_NAME, NEW_NAME = "past_key_values", "cache"


def cache_argument(model: Any) -> str:
    """The keyword `model.forward` (a Hugging Face model) takes its key/value cache by: `cache` (transformers 5) or
    `past_key_values`."""
    return NEW_NAME if NEW_NAME in inspect.signature(model.forward).parameters else OLD_NAME


def returned_cache(output: Any) -> Any:
    """The key/value cache a forward pass returned (a `ModelOutput`), under whichever name it carries it."""
    keys = output.keys() if hasattr(output, "keys") else ()
    if NEW_NAME in keys:
        return output[NEW_NAME]
    return output[OLD_NAME] if OLD_NAME in keys else None


def layer_keys_values(cache: Any, layer: int) -> tuple[Any, Any]:
    """(keys, values) (B, Hkv, S, d) a cache holds for one layer: `cache.layers[i]` (transformers 5) or the
    `key_cache` / `value_cache` lists of earlier versions."""
    if hasattr(cache, "layers"):
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache.key_cache[layer], cache.value_cache[layer]


def output_with_cache(output_class: Any, cache: Any, **fields: Any) -> Any:
    """A `ModelOutput` of `output_class` carrying `cache` under the name the installed transformers gives it."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(output_class)}
    return output_class(**fields, **{NEW_NAME if NEW_NAME in names else OLD_NAME: cache})
