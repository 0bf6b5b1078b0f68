"""The same flows on shmflow and on Bytewax 0.21.1 give the same outputs and errors.

Each test builds one flow through a pair of modules (``engine.*`` or ``bytewax.*``), runs
it on both engines and compares: ``collect``'s timeout, the order of ``on_batch`` /
``on_notify`` / ``on_eof`` with retain and discard, refusing streams of another flow or
nested in arguments, and the key phrases of error messages (so ``pytest.raises(match=...)``
written against Bytewax keeps passing). The Bytewax halves are skipped when it is not
installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

EntryPoint = Callable[..., None]

PAST = datetime(2000, 1, 1, tzinfo=UTC)


def _api(engine: str) -> SimpleNamespace:
    """The flow-building modules of ``engine`` ("shmflow" or "bytewax")."""
    if engine == "bytewax":
        pytest.importorskip("bytewax")
        prefix = "bytewax"
    else:
        prefix = "engine"
    testing = importlib.import_module(f"{prefix}.testing")
    return SimpleNamespace(
        op=importlib.import_module(f"{prefix}.operators"),
        Dataflow=importlib.import_module(f"{prefix}.dataflow").Dataflow,
        operator=importlib.import_module(f"{prefix}.dataflow").operator,
        TestingSource=testing.TestingSource,
        TestingSink=testing.TestingSink,
        run_main=testing.run_main,
    )


def _by_key(items: list[tuple[str, Any]]) -> dict[str, list[Any]]:
    """Outputs per key, in order (the order across keys depends on the workers)."""
    grouped: dict[str, list[Any]] = {}
    for key, value in items:
        grouped.setdefault(key, []).append(value)
    return grouped


def _run_both(
    build: Callable[[SimpleNamespace, list[Any]], Any], entry_point: EntryPoint
) -> tuple[list[Any], list[Any]]:
    """Outputs of the flow ``build`` makes, on shmflow (via ``entry_point``) and Bytewax."""
    ours: list[Any] = []
    entry_point(build(_api("shmflow"), ours), epoch_interval=timedelta(0))
    theirs: list[Any] = []
    bw = _api("bytewax")
    bw.run_main(build(bw, theirs), epoch_interval=timedelta(0))
    return ours, theirs


# -- 1. collect: the timeout restarts at every value ------------------------------------


def _collect_flow(api: SimpleNamespace, out: list[Any]) -> Any:
    pause = api.TestingSource.PAUSE
    items = [
        ("a", 1),
        pause(timedelta(seconds=0.4)),
        ("a", 2),  # 0.4 s after 1: within the timeout of 1
        pause(timedelta(seconds=0.4)),
        ("a", 3),  # 0.8 s after 1, 0.4 s after 2: counting from 1 it would be late
        pause(timedelta(seconds=1.5)),  # the timeout passes: [1, 2, 3] goes out
        ("a", 4),
        ("b", 5),
    ]
    flow = api.Dataflow("collect_compat")
    inp = api.op.input("inp", flow, api.TestingSource(items))
    lists = api.op.collect("collect", inp, timedelta(seconds=0.6), max_size=10)
    api.op.output("out", lists, api.TestingSink(out))
    return flow


def test_collect_timeout_restarts_at_every_value(entry_point: EntryPoint) -> None:
    ours, theirs = _run_both(_collect_flow, entry_point)
    assert _by_key(ours) == _by_key(theirs) == {"a": [[1, 2, 3], [4]], "b": [[5]]}


# -- 2. stateful_batch: on_batch / on_notify / on_eof with retain and discard ------------


def _notify_flow(api: SimpleNamespace, out: list[Any]) -> Any:
    base = api.op.StatefulBatchLogic

    class Logic(base):  # type: ignore[misc, valid-type]
        """Due at once on "due"; notified twice (still due, then not); EOF discards."""

        def __init__(self, _resume: Any) -> None:
            self.notified = 0
            self.due: datetime | None = None

        def on_batch(self, values: list[str]) -> tuple[list[Any], bool]:
            emits = [("batch", v) for v in values]
            if "discard" in values:
                return emits, True
            if "due" in values:
                self.due = PAST
            if "future" in values:
                self.due = datetime.now(UTC) + timedelta(days=1)
            return emits, False

        def on_notify(self) -> tuple[list[Any], bool]:
            self.notified += 1
            if self.notified == 1:
                return [("notify", "still due")], False  # notify_at re-read: due again
            self.due = None
            return [("notify", "done")], False

        def on_eof(self) -> tuple[list[Any], bool]:
            return [("eof", self.notified)], True

        def notify_at(self) -> datetime | None:
            return self.due

        def snapshot(self) -> None:
            return None

    # The pauses let a key owned by another worker process get its notifications before
    # its next value arrives (Bytewax notifies before a newer batch is handled).
    pause = api.TestingSource.PAUSE(timedelta(seconds=0.3))
    items = [
        ("a", "due"),
        ("b", "due"),
        pause,
        ("b", "discard"),  # a discarded logic is never notified or sent EOF
        ("c", "due"),
        pause,
        ("c", "future"),
        ("d", "plain"),
        ("d", "due"),
    ]
    flow = api.Dataflow("notify_compat")
    inp = api.op.input("inp", flow, api.TestingSource(items))
    api.op.output("out", api.op.stateful_batch("logic", inp, Logic), api.TestingSink(out))
    return flow


def test_notify_retain_discard_and_eof_order(entry_point: EntryPoint) -> None:
    ours, theirs = _run_both(_notify_flow, entry_point)
    notified = [("notify", "still due"), ("notify", "done")]
    assert _by_key(ours) == _by_key(theirs)
    assert _by_key(ours) == {
        "a": [("batch", "due"), *notified, ("eof", 2)],
        "b": [("batch", "due"), *notified, ("batch", "discard")],
        "c": [("batch", "due"), *notified, ("batch", "future"), ("eof", 2)],
        "d": [("batch", "plain"), ("batch", "due"), *notified, ("eof", 2)],
    }


# -- 3. streams of another flow, or nested in arguments ---------------------------------


def _merge_two_flows(api: SimpleNamespace) -> None:
    a = api.op.input("inp", api.Dataflow("a"), api.TestingSource([1]))
    b = api.op.input("inp", api.Dataflow("b"), api.TestingSource([1]))
    api.op.merge("merge", a, b)


def _stream_in_a_list(api: SimpleNamespace) -> None:
    flow = api.Dataflow("f")
    s = api.op.input("inp", flow, api.TestingSource([1]))

    def merge_all(step_id: str, ups: list[Any]) -> Any:
        return api.op.merge("merge", *ups)

    api.operator(merge_all)("merge_all", [s, s])


def _stream_in_a_dict(api: SimpleNamespace) -> None:
    flow = api.Dataflow("f")
    s = api.op.input("inp", flow, api.TestingSource([1]))

    def merge_all(step_id: str, ups: dict[str, Any]) -> Any:
        return api.op.merge("merge", *ups.values())

    api.operator(merge_all)("merge_all", {"x": s})


@pytest.mark.parametrize("mistake", [_merge_two_flows, _stream_in_a_list, _stream_in_a_dict])
def test_streams_must_belong_to_the_step_flow(mistake: Callable[[Any], None]) -> None:
    for engine in ("shmflow", "bytewax"):
        with pytest.raises(Exception, match="inconsistent stream scoping") as info:
            mistake(_api(engine))
        if engine == "shmflow":
            from engine.errors import FlowError

            assert isinstance(info.value, FlowError)


# -- 4. error messages keep Bytewax's key phrase -----------------------------------------


def _step_id_not_str(api: SimpleNamespace) -> None:
    flow = api.Dataflow("f")
    api.op.map(1, api.op.input("inp", flow, api.TestingSource([1])), str)


def _not_keyed(api: SimpleNamespace) -> None:
    flow = api.Dataflow("f")
    inp = api.op.input("inp", flow, api.TestingSource([1]))
    api.op.output("out", api.op.flat_map_value("fmv", inp, lambda v: [v]), api.TestingSink([]))
    api.run_main(flow)


def _no_input(api: SimpleNamespace) -> None:
    api.run_main(api.Dataflow("f"))


def _flow_id_with_period(api: SimpleNamespace) -> None:
    api.Dataflow("a.b")


def _step_id_with_period(api: SimpleNamespace) -> None:
    api.op.input("in.p", api.Dataflow("f"), api.TestingSource([1]))


def _not_a_stream(api: SimpleNamespace) -> None:
    flow = api.Dataflow("f")
    inp = api.op.input("inp", flow, api.TestingSource([1]))
    api.op.map("m", api.op.branch("b", inp, bool), str)


def _flatten_non_iterables(api: SimpleNamespace) -> None:
    flow = api.Dataflow("f")
    inp = api.op.input("inp", flow, api.TestingSource([7]))
    api.op.output("out", api.op.flatten("fl", inp), api.TestingSink([]))
    api.run_main(flow)


def _messages(error: BaseException) -> str:
    """The messages of ``error`` and its causes (Bytewax wraps run-time errors)."""
    parts = []
    seen: BaseException | None = error
    while seen is not None:
        parts.append(str(seen))
        seen = seen.__cause__
    return " <- ".join(parts)


@pytest.mark.parametrize(
    ("mistake", "phrase"),
    [
        (_step_id_not_str, "must be a `str`"),
        (_not_keyed, "2-tuple"),
        (_no_input, "at least one input"),
        (_flow_id_with_period, "can't contain a period"),
        (_step_id_with_period, "can't contain any periods"),
        (_not_a_stream, "must be a `Stream`"),
        (_flatten_non_iterables, "to be iterables"),
    ],
)
def test_error_messages_keep_the_bytewax_phrase(
    mistake: Callable[[Any], None], phrase: str
) -> None:
    for engine in ("shmflow", "bytewax"):
        with pytest.raises(Exception) as info:  # the phrase is checked below
            mistake(_api(engine))
        assert phrase in _messages(info.value), engine


def test_our_messages_keep_their_context() -> None:
    api = _api("shmflow")
    with pytest.raises(TypeError, match=r"step 'f\.fl'.*to be iterables.*int 7"):
        _flatten_non_iterables(api)
    with pytest.raises(TypeError, match=r"step 'f\.fmv' is keyed.*must be a 2-tuple.*int 1"):
        _not_keyed(api)
    with pytest.raises(ValueError, match=r"can't contain any periods.*'in\.p'"):
        _step_id_with_period(api)
    with pytest.raises(TypeError, match=r"'up' argument must be a `Stream`.*BranchOut"):
        _not_a_stream(api)


def test_flat_map_mapper_returning_a_non_iterable() -> None:
    api = _api("shmflow")
    flow = api.Dataflow("f")
    inp = api.op.input("inp", flow, api.TestingSource([1]))
    api.op.output("out", api.op.flat_map("fm", inp, lambda x: x), api.TestingSink([]))
    with pytest.raises(TypeError, match=r"mapper of step 'f\.fm' must return an iterable"):
        api.run_main(flow)
