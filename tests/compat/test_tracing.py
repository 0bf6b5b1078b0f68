"""``engine.tracing``: Bytewax's ``setup_tracing`` names; logging on one machine."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator

import pytest

import engine.operators as op
import engine.tracing
from engine.dataflow import Dataflow
from engine.testing import TestingSink, TestingSource
from engine.tracing import (
    JaegerConfig,
    OtlpTracingConfig,
    Tracer,
    TracingConfig,
    TracingUnavailableWarning,
    setup_tracing,
)
from tests.compat.conftest import EntryPoint


def _our_handlers() -> list[logging.Handler]:
    # Not pytest's: it adds its capture handlers to loggers that do not propagate.
    handlers = logging.getLogger("engine").handlers
    return [h for h in handlers if type(h).__module__ == "engine.tracing"]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    logger = logging.getLogger("engine")
    before = (logger.level, logger.propagate)
    yield
    # A new set-up first undoes the one a test left in force; closing it undoes itself.
    setup_tracing().close()
    assert (logger.level, logger.propagate) == before
    assert _our_handlers() == []


def test_log_level_filters_engine_records(capsys: pytest.CaptureFixture[str]) -> None:
    tracer = setup_tracing(log_level="INFO")
    assert isinstance(tracer, Tracer)
    log = logging.getLogger("engine.compat_test")
    log.info("shown %d", 1)
    log.debug("hidden")
    logging.getLogger("not_engine").error("not ours")
    err = capsys.readouterr().err
    assert "INFO engine.compat_test: shown 1" in err
    assert "hidden" not in err and "not ours" not in err


def test_default_level_is_error_and_close_undoes_it(capsys: pytest.CaptureFixture[str]) -> None:
    with setup_tracing() as tracer:
        assert tracer.level == logging.ERROR
        logging.getLogger("engine").warning("quiet")
        logging.getLogger("engine").error("loud")
    logging.getLogger("engine").error("after close")
    err = capsys.readouterr().err
    assert "loud" in err and "quiet" not in err and "after close" not in err
    tracer.close()  # again: nothing happens


@pytest.mark.parametrize(
    ("name", "level"),
    [("WARN", logging.WARNING), ("warning", logging.WARNING), ("TRACE", logging.DEBUG)],
)
def test_bytewax_level_names(name: str, level: int) -> None:
    assert setup_tracing(log_level=name).level == level


def test_unknown_level_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="log_level must be one of ERROR, WARN"):
        setup_tracing(log_level="LOUD")


def test_a_second_setup_replaces_the_first() -> None:
    logger = logging.getLogger("engine")
    first = setup_tracing(log_level="DEBUG")
    second = setup_tracing(log_level="ERROR")
    assert logger.level == logging.ERROR
    assert len(_our_handlers()) == 1
    first.close()  # already replaced: leaves the second in force
    assert logger.level == logging.ERROR
    second.close()


@pytest.mark.parametrize(
    "config",
    [
        JaegerConfig("svc"),
        JaegerConfig("svc", endpoint="127.0.0.1:6831", sampling_ratio=0.5),
        OtlpTracingConfig("svc", url="grpc://127.0.0.1:4317"),
    ],
    ids=["jaeger", "jaeger-endpoint", "otlp"],
)
def test_span_export_configs_warn_and_logging_still_works(config: TracingConfig) -> None:
    with pytest.warns(TracingUnavailableWarning, match="does not export trace spans.*--stats"):
        tracer = setup_tracing(config, log_level="INFO")
    assert tracer.level == logging.INFO


def test_config_fields() -> None:
    jaeger = JaegerConfig("svc", "host:1", 0.25)
    assert (jaeger.service_name, jaeger.endpoint, jaeger.sampling_ratio) == ("svc", "host:1", 0.25)
    otlp = OtlpTracingConfig("svc")
    assert (otlp.service_name, otlp.url, otlp.sampling_ratio) == ("svc", None, 1.0)
    with pytest.raises(ValueError, match="sampling_ratio must be between"):
        OtlpTracingConfig("svc", sampling_ratio=2)
    with pytest.raises(TypeError, match="must be a TracingConfig"):
        setup_tracing("jaeger")  # type: ignore[arg-type]


def test_a_flow_calling_setup_tracing_runs(entry_point: EntryPoint) -> None:
    tracer = setup_tracing(log_level="INFO")
    out: list[int] = []
    flow = Dataflow("traced")
    op.output("out", op.input("inp", flow, TestingSource([1, 2])), TestingSink(out))
    entry_point(flow)
    assert sorted(out) == [1, 2]
    tracer.close()


def test_same_names_and_signatures_as_bytewax() -> None:
    bytewax_tracing = pytest.importorskip("bytewax.tracing")
    assert set(bytewax_tracing.__all__) <= set(engine.tracing.__all__)
    params = list(inspect.signature(setup_tracing).parameters)
    assert params == ["tracing_config", "log_level"]
    assert list(inspect.signature(JaegerConfig).parameters) == [
        "service_name",
        "endpoint",
        "sampling_ratio",
    ]
    assert list(inspect.signature(OtlpTracingConfig).parameters) == [
        "service_name",
        "url",
        "sampling_ratio",
    ]
    assert issubclass(JaegerConfig, TracingConfig) and issubclass(OtlpTracingConfig, TracingConfig)
