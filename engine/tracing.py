"""Logging set-up under Bytewax's names: :func:`setup_tracing` and the tracing configs.

A ported flow that calls ``setup_tracing(log_level="INFO")`` (or keeps the handle
``tracer = setup_tracing()``) runs unchanged. What applies on one machine:

- :func:`setup_tracing` sends the records of the ``engine`` logger (and its children)
  at ``log_level`` or above to standard error, one line each, and returns a
  :class:`Tracer` handle. Bytewax prints to standard output; we use standard error so
  that log lines do not mix with a flow's ``StdOutSink`` output. The set-up lasts
  until :meth:`Tracer.close` (or the next :func:`setup_tracing`), even if the handle is
  dropped. It configures the calling process: the supervisor, and the worker of
  :func:`engine.testing.run_main`; worker processes of a cluster keep their default.
- :class:`JaegerConfig` and :class:`OtlpTracingConfig` are accepted, but shmflow exports
  no spans: :func:`setup_tracing` then warns with :class:`TracingUnavailableWarning`
  and sets up logging as without them, so the flow still runs. A Bytewax tracing
  back-end being unreachable does not stop a flow either. For what spans would show
  (where time goes, per step and worker), use the run summary of ``python -m
  engine.run ... --stats out.json`` and its live status line.

>>> import logging
>>> tracer = setup_tracing(log_level="INFO")
>>> logging.getLogger("engine").getEffectiveLevel() == logging.INFO
True
>>> tracer.close()
"""

from __future__ import annotations

import logging
import sys
import warnings
from types import TracebackType

__all__ = [
    "JaegerConfig",
    "OtlpTracingConfig",
    "Tracer",
    "TracingConfig",
    "TracingUnavailableWarning",
    "setup_tracing",
]

#: The logger whose records :func:`setup_tracing` shows.
LOGGER_NAME = "engine"

#: Bytewax's level names (and Python's ``WARNING``) -> logging levels. Python has no
#: TRACE level; it shows what DEBUG shows.
LOG_LEVELS: dict[str, int] = {
    "ERROR": logging.ERROR,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
    "TRACE": logging.DEBUG,
}

_DEFAULT_LEVEL = "ERROR"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TracingUnavailableWarning(UserWarning):
    """A span-export config was given to :func:`setup_tracing`; shmflow exports no spans."""


class TracingConfig:
    """Base of the configs saying where traces go (Bytewax's ``TracingConfig``)."""

    def _describe(self) -> str:
        return type(self).__name__


def _check_sampling_ratio(sampling_ratio: float) -> float:
    if not 0.0 <= sampling_ratio <= 1.0:
        msg = f"sampling_ratio must be between 0.0 and 1.0, got {sampling_ratio!r}"
        raise ValueError(msg)
    return float(sampling_ratio)


class JaegerConfig(TracingConfig):
    """Bytewax's config for sending traces to Jaeger; accepted, but no spans are sent."""

    def __init__(
        self, service_name: str, endpoint: str | None = None, sampling_ratio: float = 1.0
    ) -> None:
        self._service_name = service_name
        self._endpoint = endpoint
        self._sampling_ratio = _check_sampling_ratio(sampling_ratio)

    @property
    def service_name(self) -> str:
        """Name of the flow in Jaeger."""
        return self._service_name

    @property
    def endpoint(self) -> str | None:
        """Agent address (Bytewax's default is ``127.0.0.1:6831``)."""
        return self._endpoint

    @property
    def sampling_ratio(self) -> float:
        """Fraction of traces that would be sent, between 0.0 and 1.0."""
        return self._sampling_ratio

    def _describe(self) -> str:
        return f"JaegerConfig(service_name={self._service_name!r})"


class OtlpTracingConfig(TracingConfig):
    """Bytewax's config for an OpenTelemetry collector; accepted, but no spans are sent."""

    def __init__(
        self, service_name: str, url: str | None = None, sampling_ratio: float = 1.0
    ) -> None:
        self._service_name = service_name
        self._url = url
        self._sampling_ratio = _check_sampling_ratio(sampling_ratio)

    @property
    def service_name(self) -> str:
        """Name of the flow in the collector."""
        return self._service_name

    @property
    def url(self) -> str | None:
        """Collector address (Bytewax's default is ``grpc://127.0.0.1:4317``)."""
        return self._url

    @property
    def sampling_ratio(self) -> float:
        """Fraction of traces that would be sent, between 0.0 and 1.0."""
        return self._sampling_ratio

    def _describe(self) -> str:
        return f"OtlpTracingConfig(service_name={self._service_name!r})"


class _StderrHandler(logging.Handler):
    """Writes to the current ``sys.stderr`` (looked up per record, so a replaced one is used)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


class Tracer:
    """The handle :func:`setup_tracing` returns (Bytewax's ``BytewaxTracer``).

    :meth:`close` (or leaving a ``with`` block) undoes the set-up.
    """

    def __init__(self, level: int) -> None:
        self.level = level
        self._logger = logging.getLogger(LOGGER_NAME)
        self._handler = _StderrHandler()
        self._handler.setFormatter(logging.Formatter(_FORMAT))
        self._previous = (self._logger.level, self._logger.propagate)
        self._logger.addHandler(self._handler)
        self._logger.setLevel(level)
        # Our handler shows the records; a root handler would print them twice.
        self._logger.propagate = False
        self._closed = False

    def close(self) -> None:
        """Remove the handler and restore the logger's level; calling again does nothing."""
        global _active
        if self._closed:
            return
        self._closed = True
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._previous[0])
        self._logger.propagate = self._previous[1]
        if _active is self:
            _active = None

    def __enter__(self) -> Tracer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


#: The set-up in force, replaced by the next setup_tracing().
_active: Tracer | None = None


def _level(log_level: str | None) -> int:
    name = _DEFAULT_LEVEL if log_level is None else str(log_level).upper()
    try:
        return LOG_LEVELS[name]
    except KeyError:
        msg = f"log_level must be one of {', '.join(LOG_LEVELS)} (any case); got {log_level!r}"
        raise ValueError(msg) from None


def setup_tracing(
    tracing_config: TracingConfig | None = None, log_level: str | None = None
) -> Tracer:
    """Show shmflow's log records at ``log_level`` (default ``"ERROR"``) on standard error.

    ``log_level`` is one of ``ERROR``, ``WARN``, ``INFO``, ``DEBUG``, ``TRACE`` (any
    case; an unknown name raises ValueError). A :class:`JaegerConfig` or
    :class:`OtlpTracingConfig` warns with :class:`TracingUnavailableWarning` (shmflow
    exports no spans) and is otherwise ignored.
    """
    global _active
    level = _level(log_level)
    if tracing_config is not None:
        if not isinstance(tracing_config, TracingConfig):
            msg = f"tracing_config must be a TracingConfig, got {tracing_config!r}"
            raise TypeError(msg)
        warnings.warn(
            f"{tracing_config._describe()}: shmflow does not export trace spans, so nothing "
            f"is sent; logs of the {LOGGER_NAME!r} logger still go to standard error. For "
            "per-step and per-worker timings use the run summary (python -m engine.run "
            "... --stats out.json).",
            TracingUnavailableWarning,
            stacklevel=2,
        )
    if _active is not None:
        _active.close()
    _active = Tracer(level)
    return _active
