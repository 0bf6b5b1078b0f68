"""The package's public surface: exported names, docstrings, the layering rule."""

from __future__ import annotations

import inspect

import pytest

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


def _fresh_interpreter(code: str) -> str:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_importing_the_package_does_not_load_lmdb_until_the_store_is_used() -> None:
    # Workers of a run without recovery import ``recovery`` for its key arithmetic only.
    code = (
        "import sys, recovery\n"
        "print('lmdb' in sys.modules, recovery.key_group('k', 8) in range(8))\n"
        "store_class = recovery.RecoveryStore\n"
        "print('lmdb' in sys.modules, store_class is recovery._store.RecoveryStore)\n"
    )
    assert _fresh_interpreter(code).split("\n") == ["False True", "True True"]


def test_lazy_names_behave_like_plain_attributes() -> None:
    for name in recovery._LAZY:
        assert name in recovery.__all__ and name in dir(recovery)
        assert getattr(recovery, name) is getattr(recovery, name)
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        recovery.Nothing  # noqa: B018
    assert _fresh_interpreter("from recovery import *; print(RecoveryStore.__name__)") == (
        "RecoveryStore"
    )
