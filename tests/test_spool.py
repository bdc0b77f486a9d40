"""Nothing left behind in the spool: each orchestrator process spools uploads into a folder of its own, removed when
it stops; a start removes the folders of orchestrators that were killed, and never those of running ones."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from orchestrator.spool import OWNER, ProcessSpool

REPO_ROOT = Path(__file__).resolve().parents[1]
HOLD_A_SPOOL = """
import sys, time
from pathlib import Path
from orchestrator.spool import ProcessSpool
folder = ProcessSpool(Path(sys.argv[1])).open()
(folder / "upload-1.bin").write_bytes(b"half an upload")
print(folder, flush=True)
time.sleep(120)
"""


def holding_a_spool(base: Path) -> tuple[subprocess.Popen, Path]:
    """Another orchestrator process, in the middle of an upload."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_A_SPOOL, str(base)], stdout=subprocess.PIPE, text=True,
                               cwd=REPO_ROOT)
    return process, Path(process.stdout.readline().strip())


def test_a_start_removes_what_killed_orchestrators_left_and_keeps_what_running_ones_use(tmp_path):
    killed, killed_folder = holding_a_spool(tmp_path)
    running, running_folder = holding_a_spool(tmp_path)
    try:
        os.kill(killed.pid, signal.SIGKILL)  # no clean-up of its own runs
        killed.wait(10)
        assert (killed_folder / "upload-1.bin").exists()
        # the pid of a folder runs, but it is another process now (pids are reused): gone as well
        reused = tmp_path / f"orchestrator-{running.pid}-1-abc"
        reused.mkdir()
        # a folder written before this machine's last boot
        rebooted = Path(str(running_folder) + "-before-boot")
        rebooted.mkdir()
        owner = json.loads((running_folder / OWNER).read_text())
        (rebooted / OWNER).write_text(json.dumps({**owner, "boot": "an earlier boot"}))
        # on a volume shared with another machine, that machine's folders are its own to judge
        elsewhere = tmp_path / "orchestrator-1-1-abc"
        elsewhere.mkdir()
        (elsewhere / OWNER).write_text(json.dumps({"pid": 1, "host": "another-host", "boot": "x"}))

        spool = ProcessSpool(tmp_path)
        ours = spool.open()
        assert sorted(tmp_path.iterdir()) == sorted([ours, running_folder, elsewhere])
        assert (running_folder / "upload-1.bin").exists()
        spool.close()
        assert not ours.exists()
    finally:
        running.kill()
        running.wait(10)


def test_stopping_removes_the_folder_with_the_uploads_in_it(tmp_path):
    spool = ProcessSpool(tmp_path / "spool")
    folder = spool.open()
    (folder / "upload-abc.bin").write_bytes(b"a request cancelled at the end of the drain")
    spool.close()
    assert list((tmp_path / "spool").iterdir()) == []
