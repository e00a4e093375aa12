"""Stale clean-up by the recorded resources (processes and directories need no root)."""

import asyncio
import subprocess
import sys

import pytest

from routeflow.vnet import VnetError, cleanup
from routeflow.vnet.manager import _acquire_lock, _release_lock, cleanup_stale
from routeflow.vnet.resources import Resource, ResourceLog, process_record


def test_cleanup_removes_what_a_crashed_run_recorded(tmp_path):
    state = tmp_path / "vnet.json"
    run_dir = tmp_path / "vms" / "rA"
    run_dir.mkdir(parents=True)
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = ResourceLog(state)
        record.add(Resource("dir", str(run_dir), "rA"))
        record.add(process_record("client:rA", "rA", orphan.pid))
        assert asyncio.run(cleanup_stale(state)) is True
        assert orphan.wait(timeout=5) is not None
        assert not run_dir.exists() and not state.exists()
        assert asyncio.run(cleanup_stale(state)) is False
    finally:
        orphan.kill()
        orphan.wait()


def test_cleanup_waits_for_no_running_environment(tmp_path):
    state = tmp_path / "vnet.json"
    lock = _acquire_lock(state)
    try:
        with pytest.raises(VnetError, match="lock"):
            asyncio.run(cleanup_stale(state))
        assert cleanup.main([str(state)]) == 1
    finally:
        _release_lock(lock)
    assert cleanup.main([str(state)]) == 0
