"""When parts fail: a tritonserver that dies leaves nothing behind once stopped (stub processes, shared memory), and a
process group is stopped even when its leader died first."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.child_process import group_alive, stop_process_group
from orchestrator.triton_process import TritonProcess, mapped_shm_regions, shm_regions

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_a_group_whose_leader_died_is_still_stopped_and_reaped():
    leader = subprocess.Popen(["bash", "-c", "(trap '' TERM; sleep 300) & sleep 0.5; exit 3"],
                              start_new_session=True)
    leader.wait(10)
    assert group_alive(leader.pid)  # the child that ignores SIGTERM lives on
    started = time.monotonic()
    stop_process_group(leader, timeout_s=1.0)
    assert not group_alive(leader.pid) and time.monotonic() - started < 8


@pytest.mark.triton
def test_a_killed_tritonserver_leaves_no_stub_and_no_shared_memory_after_stop(tiny_cpu_repository, tmp_path):
    server = TritonProcess(tiny_cpu_repository, log_file=tmp_path / "tritonserver.log").start()
    ours = mapped_shm_regions(server._process.pid)  # the regions the Python-backend stubs map
    assert ours
    os.kill(server._process.pid, signal.SIGKILL)  # a crash: nothing of Triton's own clean-up runs
    time.sleep(0.5)
    assert group_alive(server._process.pid)  # the stubs are orphans now
    server.stop()
    assert not group_alive(server._process.pid)
    assert not ours & set(shm_regions())
