"""Checking and grouping keyed items: ``(str key, value)`` 2-tuples.

Keyed steps accept tuples (and tuple subclasses such as named tuples) of length 2 whose
first element is a ``str``; anything else is an :class:`~engine.errors.ItemTypeError`
naming the step and showing the item.
"""

from __future__ import annotations

from typing import Any

from engine.errors import ItemTypeError, item_repr

__all__ = ["check_keyed", "group_by_key", "require_str_keys"]

_TUPLE_ONLY = {tuple}
_STR_ONLY = {str}


def _bad_item(step_id: str, item: Any) -> ItemTypeError | None:
    if not isinstance(item, tuple) or len(item) != 2:
        return ItemTypeError(
            f"step {step_id!r} is keyed and needs (key, value) 2-tuples with a str key "
            "(each item must be a 2-tuple: the step requires `(key, value)` 2-tuple from "
            f"upstream for routing); got {type(item).__name__} {item_repr(item)}. Use "
            "op.key_on(...) or "
            "op.map(...) to make (str, value) pairs before this step"
        )
    if not isinstance(item[0], str):
        return ItemTypeError(
            f"step {step_id!r} is keyed and needs str keys (it requires `str` keys in "
            "`(key, value)` from upstream); got key of type "
            f"{type(item[0]).__name__} in item {item_repr(item)}. Convert the key with "
            "str() (keys route by a stable hash of the str)"
        )
    return None


def check_keyed(step_id: str, batch: list[Any], keys: Any = None) -> None:
    """Raise :class:`ItemTypeError` for the first item of ``batch`` that is not a pair.

    ``keys`` (the distinct keys, if the caller has them) makes the common case cheap:
    one pass over item types, one over distinct key types.
    """
    if set(map(type, batch)) <= _TUPLE_ONLY and (
        keys is not None and set(map(type, keys)) <= _STR_ONLY
    ):
        for item in batch:
            if len(item) != 2:
                break
        else:
            return
    for item in batch:
        error = _bad_item(step_id, item)
        if error is not None:
            raise error


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
        check_keyed(step_id, batch)  # raises the diagnosis
        raise
    if not (set(map(type, batch)) <= _TUPLE_ONLY and set(map(type, groups)) <= _STR_ONLY):
        check_keyed(step_id, batch)
    return groups


def require_str_keys(step_id: str, batch: list[Any], keys: list[Any]) -> None:
    """Raise :class:`ItemTypeError` unless every ``keys[i]`` (what the key function of
    step ``step_id`` returned for ``batch[i]``) is a ``str``; one C-level pass when so.

    >>> require_str_keys("s", [{"id": 1}], [1])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    engine.errors.ItemTypeError: key function of step 's' must return a str; it ret...
    """
    try:
        "".join(keys)  # fails on the first key that is not a str
    except TypeError:
        for item, key in zip(batch, keys, strict=True):
            if not isinstance(key, str):
                msg = (
                    f"key function of step {step_id!r} must return a str; it returned "
                    f"{type(key).__name__} {item_repr(key)} for item {item_repr(item)}. "
                    "Wrap it with str() if that is what you mean"
                )
                raise ItemTypeError(msg) from None
        raise
