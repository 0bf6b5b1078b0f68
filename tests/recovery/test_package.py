"""The package's public surface: exported names, docstrings, the layering rule."""

from __future__ import annotations

import inspect

import recovery
import recovery.cli
import recovery.errors


def test_every_public_name_is_exported_and_documented() -> None:
    for module in (recovery, recovery.cli, recovery.errors):
        assert module.__doc__
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert obj.__doc__, f"{module.__name__}.{name} has no docstring"
    assert "never imports" in (recovery.__doc__ or "")


def test_public_methods_are_documented() -> None:
    for cls in (recovery.RecoveryStore, recovery.EpochWriter, recovery.ExecutionLock):
        for name, member in vars(cls).items():
            if not name.startswith("_") and callable(member):
                assert member.__doc__, f"{cls.__name__}.{name} has no docstring"


def test_errors_form_one_tree() -> None:
    for name in recovery.errors.__all__:
        assert issubclass(getattr(recovery.errors, name), recovery.RecoveryError)
