"""Argument checks shared by the operators: one wording for one mistake."""

from __future__ import annotations

from engine.dataflow import current_step_id
from engine.errors import item_repr

__all__ = ["require_callable"]


def require_callable(value: object, what: str, where: str | None = None) -> None:
    """Raise TypeError unless ``value`` is callable, naming ``what`` and the step.

    ``where`` names the place (default: the step of the operator being built).

    >>> require_callable(len, "mapper")
    >>> require_callable(3, "mapper", where="step 'f.m'")
    Traceback (most recent call last):
    TypeError: step 'f.m': mapper must be callable; got int 3
    """
    if callable(value):
        return
    if where is None:
        try:
            where = f"step {current_step_id()!r}"
        except RuntimeError:  # not inside an operator builder
            where = "argument"
    msg = f"{where}: {what} must be callable; got {type(value).__name__} {item_repr(value)}"
    raise TypeError(msg)
