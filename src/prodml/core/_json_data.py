"""JSON data checked when it is handed over, not when a database refuses it.

>>> json_mapping({"n": 3}, owner="deployment 'e'", field="evidence")
{'n': 3}
>>> json_mapping([1.5], owner="deployment 'e'", field="evidence")
Traceback (most recent call last):
...
prodml.core.errors.DefinitionError: deployment 'e': evidence must be a mapping of JSON data, got list
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prodml.core.errors import DefinitionError

__all__ = ["json_mapping"]


def json_mapping(value: Any, *, owner: str, field: str) -> dict[str, Any]:
    """``value`` as a dict of JSON data; :class:`DefinitionError` naming ``owner`` and
    ``field`` for anything else (a non-mapping, NaN, infinities, other objects)."""
    if not isinstance(value, Mapping):
        raise DefinitionError(
            f"{owner}: {field} must be a mapping of JSON data, got {type(value).__name__}"
        )
    data = dict(value)
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(
            f"{owner}: {field} must be JSON data (finite numbers, strings, lists, "
            f"string-keyed mappings): {exc}"
        ) from None
    return data
