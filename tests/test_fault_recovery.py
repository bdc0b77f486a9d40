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


def test_a_child_that_keeps_dying_is_restarted_with_growing_delays(monkeypatch):
    from orchestrator import embedded
    from orchestrator.embedded import EmbeddedStack, StackConfig

    now = [1000.0]
    monkeypatch.setattr(embedded.time, "monotonic", lambda: now[0])

    class Dying:
        """Starts fine, is dead again at every look."""
        exit_code = 1
        starts = 0

        def stop(self):
            pass

        def start(self):
            self.starts += 1

    messages = []
    stack = EmbeddedStack(StackConfig(), log=messages.append)
    stack.triton = child = Dying()
    starts_at = {}
    for t in (1000, 1001, 1001.5, 1002, 1003, 1004, 1005, 1006, 1009, 1010):
        now[0] = t
        stack.supervise()
        starts_at[t] = child.starts
    assert starts_at[1000] == 1  # the first exit after a long run: at once
    assert starts_at[1001] == 1 and starts_at[1001.5] == 1 and starts_at[1002] == 2  # then 1 s later
    assert starts_at[1004] == 2 and starts_at[1005] == 3  # then 2 s
    assert starts_at[1009] == 3 and starts_at[1010] == 4  # then 4 s
    assert "tritonserver exited (code 1); restarting it in 4 s ..." in messages
    now[0] = 1100  # it ran for over a minute: the next exit restarts it at once again
    stack.supervise()
    assert child.starts == 5
