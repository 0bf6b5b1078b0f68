"""Checking and grouping keyed items: ``(str key, value)`` 2-tuples."""

from __future__ import annotations

from typing import Any

from engine.errors import ItemTypeError, item_repr

__all__ = ["group_by_key"]


def group_by_key(step_id: str, batch: list[Any]) -> dict[str, list[Any]]:
    """Group ``(key, value)`` pairs by key, checking their shape; keys in arrival order."""
    groups: dict[str, list[Any]] = {}
    get = groups.get
    try:
        for key, value in batch:
            values = get(key)
            if values is None:
                groups[key] = [value]
            else:
                values.append(value)
    except (TypeError, ValueError):
        pass  # diagnosed below
    else:
        if {type(k) for k in groups} <= {str} and {type(i) for i in batch} <= {tuple}:
            return groups
    for item in batch:
        if not isinstance(item, tuple) or len(item) != 2:
            msg = (
                f"step {step_id!r} is keyed and needs (key, value) 2-tuples with a str key; "
                f"got {type(item).__name__} {item_repr(item)}. Use op.key_on(...) or "
                "op.map(...) to make (str, value) pairs before this step"
            )
            raise ItemTypeError(msg)
        if not isinstance(item[0], str):
            msg = (
                f"step {step_id!r} is keyed and needs str keys; got key of type "
                f"{type(item[0]).__name__} in item {item_repr(item)}. Convert the key with "
                "str() (keys route by a stable hash of the str)"
            )
            raise ItemTypeError(msg)
    return groups
