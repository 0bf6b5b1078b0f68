"""The execution lock: one execution per store; a dead holder frees it (kernel flock)."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from recovery import ExecutionLock, RecoveryStore, StoreInUseError
from tests.recovery._procs import run_python, start_python

TRY_LOCK = """
import sys
from recovery import RecoveryStore, StoreInUseError
with RecoveryStore.open(sys.argv[1]) as store:
    try:
        store.lock_for_execution()
    except StoreInUseError as error:
        print(f"refused {error.pid}|{error}")
    else:
        print("locked")
"""

HOLD_LOCK = """
import os, sys
from recovery import RecoveryStore
with RecoveryStore.open(sys.argv[1]) as store, store.lock_for_execution():
    print(f"holding {os.getpid()}", flush=True)
    sys.stdin.read()  # hold until the test closes stdin or kills this process
"""


def test_lock_is_exclusive_and_released_on_exit(store: RecoveryStore) -> None:
    with store.lock_for_execution() as lock:
        assert lock.held
        with pytest.raises(
            StoreInUseError, match=re.escape(f"in use by pid {lock.pid} since {lock.since}")
        ):
            ExecutionLock.acquire(store.path)
    assert not lock.held
    with store.lock_for_execution():
        pass


def test_second_execution_in_another_process_is_refused_naming_the_holder(
    store: RecoveryStore,
) -> None:
    with store.lock_for_execution() as lock:
        refused = run_python(TRY_LOCK, str(store.path))
        assert refused.returncode == 0, refused.stderr
        pid, message = refused.stdout.strip().removeprefix("refused ").split("|", 1)
        assert int(pid) == lock.pid
        assert f"in use by pid {lock.pid} since {lock.since}" in message
        assert "wait for that execution to finish" in message
    assert run_python(TRY_LOCK, str(store.path)).stdout.strip() == "locked"


@pytest.mark.parametrize("death", ["sigkill", "clean exit"])
def test_a_dead_holder_frees_the_store(store_dir: Path, death: str) -> None:
    with start_python(HOLD_LOCK, str(store_dir)) as holder:
        try:
            assert holder.stdout is not None and holder.stdin is not None
            assert holder.stdout.readline() == f"holding {holder.pid}\n"
            with RecoveryStore.open(store_dir) as store:
                with pytest.raises(StoreInUseError) as info:
                    store.lock_for_execution()
                assert info.value.pid == holder.pid
                if death == "sigkill":
                    holder.kill()
                    assert holder.wait() == -signal.SIGKILL
                else:
                    holder.stdin.close()
                    assert holder.wait() == 0
                with store.lock_for_execution() as lock:
                    assert lock.held
        finally:
            if holder.poll() is None:
                holder.kill()


def test_lock_is_not_picklable(store: RecoveryStore) -> None:
    import pickle

    with store.lock_for_execution() as lock, pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(lock)


HOLD_READER = """
import os, sys
from recovery import RecoveryStore
store = RecoveryStore.open(sys.argv[1])
with store._env().env.begin():
    print(f"reading {os.getpid()}", flush=True)
    sys.stdin.read()
"""


def test_open_clears_the_reader_slot_of_a_killed_process(store: RecoveryStore) -> None:
    with start_python(HOLD_READER, str(store.path)) as reader:
        try:
            assert reader.stdout is not None
            assert reader.stdout.readline() == f"reading {reader.pid}\n"
            assert str(reader.pid) in store._env().env.readers().split()
        finally:
            reader.kill()
        reader.wait()
    with RecoveryStore.open(store.path) as again:  # open (again) checks the reader table
        table = again._env().env.readers()
    assert str(reader.pid) not in table.split(), table
