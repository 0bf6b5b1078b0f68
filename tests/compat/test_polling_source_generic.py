"""``SimplePollingSource[X]`` takes one type argument, as in Bytewax 0.21.

Bytewax gives the state type ``Sn`` a default of ``None`` (PEP 696); Python 3.11 has
no TypeVar defaults, so shmflow supplies it when the class is subscripted.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Generic, TypeVar

import pytest

import engine.operators as op
from engine.dataflow import Dataflow
from engine.inputs import SimplePollingSource, Sn
from engine.testing import TestingSink
from tests.compat.conftest import EntryPoint

Y = TypeVar("Y")
Z = TypeVar("Z")


class Counter(SimplePollingSource[int]):
    """Emits 1, 2, 3 one millisecond apart, then ends."""

    def __init__(self) -> None:
        super().__init__(timedelta(milliseconds=1))
        self.emitted = 0

    def next_item(self) -> int:
        if self.emitted == 3:
            raise StopIteration
        self.emitted += 1
        return self.emitted


def test_one_type_argument_means_a_none_state() -> None:
    assert SimplePollingSource[int] == SimplePollingSource[int, None]
    assert Counter.__orig_bases__ == (SimplePollingSource[int, None],)  # type: ignore[attr-defined]


def test_one_type_argument_matches_bytewax() -> None:
    bytewax_inputs = pytest.importorskip("bytewax.inputs")

    class BytewaxCounter(bytewax_inputs.SimplePollingSource[int]):  # type: ignore[misc]
        pass

    (bytewax_base,) = BytewaxCounter.__orig_bases__
    (engine_base,) = Counter.__orig_bases__  # type: ignore[attr-defined]
    # typing_extensions keeps the default as given; typing turns a given None into NoneType.
    assert bytewax_base.__args__ == (int, None)
    assert engine_base.__args__ == (int, type(None))


def test_two_type_arguments_still_name_the_state() -> None:
    assert SimplePollingSource[int, str].__args__ == (int, str)  # type: ignore[attr-defined]


def test_generic_subclasses_keep_their_own_parameters() -> None:
    class Both(SimplePollingSource[Y, Sn]):
        pass

    class ItemOnly(SimplePollingSource[Y, int]):
        pass

    class StateOnly(SimplePollingSource[int, Sn]):
        pass

    class Three(SimplePollingSource[Y, Sn], Generic[Y, Sn, Z]):
        pass

    assert Both[str].__args__ == (str, type(None))  # type: ignore[attr-defined]
    assert Both[str, int].__args__ == (str, int)  # type: ignore[attr-defined]
    assert ItemOnly[str].__args__ == (str,)  # type: ignore[attr-defined]
    assert StateOnly[str].__args__ == (str,)  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="Too few arguments"):
        Three[str]  # only 2-parameter classes get the default


def test_too_many_type_arguments_still_fail() -> None:
    with pytest.raises(TypeError, match="Too many arguments"):
        SimplePollingSource[int, int, int]  # type: ignore[misc]


def test_a_one_argument_polling_source_runs(entry_point: EntryPoint) -> None:
    out: list[int] = []
    flow = Dataflow("poll_generic")
    op.output("out", op.input("inp", flow, Counter()), TestingSink(out))
    entry_point(flow)
    assert out == [1, 2, 3]
