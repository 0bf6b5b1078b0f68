"""engine.operators.helpers.map_dict_value."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import engine.operators as op
from engine.dataflow import Dataflow
from engine.errors import EngineRuntimeError
from engine.operators.helpers import map_dict_value
from engine.testing import TestingSink, TestingSource

EntryPoint = Callable[..., None]


def test_maps_one_value_in_place_and_returns_the_dict() -> None:
    row = {"name": "ada", "id": 1}
    result = map_dict_value("name", str.upper)(row)
    assert result is row
    assert row == {"name": "ADA", "id": 1}


def test_missing_key_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="email"):
        map_dict_value("email", str.lower)({"name": "ada"})


def test_as_a_map_mapper(entry_point: EntryPoint) -> None:
    flow = Dataflow("mdv_test")
    rows = op.input("inp", flow, TestingSource([{"n": 1, "m": "x"}, {"n": 2, "m": "y"}]))
    out: list[dict[str, Any]] = []
    op.output("out", op.map("inc", rows, map_dict_value("n", lambda n: n + 1)), TestingSink(out))
    entry_point(flow, epoch_interval=timedelta(0))
    assert out == [{"n": 2, "m": "x"}, {"n": 3, "m": "y"}]


def test_mapper_errors_name_the_step(entry_point: EntryPoint) -> None:
    flow = Dataflow("mdv_fail")
    rows = op.input("inp", flow, TestingSource([{"n": "one"}]))
    op.output("out", op.map("parse", rows, map_dict_value("n", int)), TestingSink([]))
    with pytest.raises(EngineRuntimeError, match=r"mdv_fail\.parse") as info:
        entry_point(flow, epoch_interval=timedelta(0))
    assert isinstance(info.value.__cause__, ValueError)
