"""The stateless core steps: ``flat_map_batch``, ``branch``, ``merge``, ``redistribute``
and ``inspect_debug``."""

from __future__ import annotations

from typing import Any

from engine.errors import ItemTypeError, item_repr
from engine.runtime.nodes.base import Node, NodeContext
from engine.runtime.plan import BranchConfig, FlatMapBatchConfig, InspectConfig, PlanStep

__all__ = ["BranchNode", "FlatMapBatchNode", "InspectNode", "PassNode", "RedistributeNode"]


class FlatMapBatchNode(Node):
    def __init__(self, step: PlanStep, ctx: NodeContext) -> None:
        super().__init__(step, ctx)
        config = step.config
        assert isinstance(config, FlatMapBatchConfig)
        self.mapper = config.mapper

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        try:
            out = self.mapper(batch)
            if type(out) is not list:
                out = list(out)
        except Exception as ex:
            raise self.failure(epoch, ex) from ex
        if out:
            self.emit(0, epoch, out)


class BranchNode(Node):
    def __init__(self, step: PlanStep, ctx: NodeContext) -> None:
        super().__init__(step, ctx)
        config = step.config
        assert isinstance(config, BranchConfig)
        self.predicate = config.predicate

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        try:
            flags = list(map(self.predicate, batch))
        except Exception as ex:
            raise self.failure(epoch, ex) from ex
        if not {type(f) for f in flags} <= {bool}:
            bad = next(x for x, f in zip(batch, flags, strict=True) if type(f) is not bool)
            flag = next(f for f in flags if type(f) is not bool)
            wrong = ItemTypeError(
                f"branch {self.step_id!r}: predicate must return a bool; it returned "
                f"{item_repr(flag)} for item {item_repr(bad)}"
            )
            raise self.failure(epoch, wrong)
        trues = [x for x, f in zip(batch, flags, strict=True) if f]
        falses = [x for x, f in zip(batch, flags, strict=True) if not f]
        if trues:
            self.emit(0, epoch, trues)
        if falses:
            self.emit(1, epoch, falses)


class PassNode(Node):
    """``merge``: items pass unchanged."""

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        self.emit(0, epoch, batch)


class RedistributeNode(Node):
    """``redistribute``: batches are spread over the workers."""

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        batch = self.route(epoch, batch)
        if batch:
            self.emit(0, epoch, batch)

    def deliver(self, epoch: int, batch: list[Any]) -> None:
        self.emit(0, epoch, batch)


class InspectNode(Node):
    def __init__(self, step: PlanStep, ctx: NodeContext) -> None:
        super().__init__(step, ctx)
        config = step.config
        assert isinstance(config, InspectConfig)
        self.inspector = config.inspector

    def push(self, port: int, epoch: int, batch: list[Any]) -> None:
        inspector, step_id, index = self.inspector, self.step_id, self.ctx.config.worker_index
        try:
            for item in batch:
                inspector(step_id, item, epoch, index)
        except Exception as ex:
            raise self.failure(epoch, ex) from ex
        self.emit(0, epoch, batch)
