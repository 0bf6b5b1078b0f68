"""Errors raised by the engine.

The tree is small on purpose:

- :class:`EngineRuntimeError`: a run failed. Raised by ``run_main``, ``cluster_main`` and
  ``engine.run``; names the step, worker and epoch where it happened and carries the
  user's exception as ``__cause__`` when user code raised.
- :class:`FlowError` (a ``ValueError``): the flow itself is wrong (no input, no output,
  duplicate or malformed step ids). Fix the flow definition.
- :class:`ItemTypeError` (an ``EngineRuntimeError`` and a ``TypeError``): an item had
  the wrong shape for the step that received it (for example a keyed step got something
  other than a ``(str, value)`` pair).
"""

from __future__ import annotations

__all__ = ["EngineRuntimeError", "FlowError", "ItemTypeError", "item_repr"]

#: Item reprs in error messages are cut to this many characters.
ITEM_REPR_LIMIT = 200


def item_repr(item: object, limit: int = ITEM_REPR_LIMIT) -> str:
    """A repr of ``item`` cut to ``limit`` characters, safe against broken ``__repr__``."""
    try:
        text = repr(item)
    except Exception as ex:  # a user's broken __repr__ must not hide the real error
        text = f"<{type(item).__name__} with failing repr: {ex!r}>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


class EngineRuntimeError(RuntimeError):
    """A dataflow run failed.

    The message names the fully qualified step id, the worker index and the epoch; when
    user code raised, the user's exception is chained as ``__cause__`` (its traceback is
    printed above this error).
    """

    def __init__(
        self,
        message: str,
        *,
        step_id: str | None = None,
        worker_index: int | None = None,
        epoch: int | None = None,
    ) -> None:
        super().__init__(message)
        self.step_id = step_id
        self.worker_index = worker_index
        self.epoch = epoch


class FlowError(ValueError):
    """The dataflow definition is invalid; the message says what to change."""


class ItemTypeError(EngineRuntimeError, TypeError):
    """An item reaching a step has the wrong type or shape; the message shows the item.

    It is both an :class:`EngineRuntimeError` (the run failed at a named step) and a
    ``TypeError`` (what went wrong), so either can be caught.
    """
