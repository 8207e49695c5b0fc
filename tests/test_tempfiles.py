"""Leftover temporary files: removed by the next run once their writer is dead, never while it lives."""

import os
import subprocess
import sys
import time
from pathlib import Path

from segbench.records import write_record
from segbench.tempfiles import owned_temp_file, remove_abandoned

ROOT = Path(__file__).resolve().parent.parent

# A record writer that stops inside write_record, after its temp file exists (fsync never returns).
STUCK_WRITER = (
    "import os, sys, time; os.fsync = lambda fd: time.sleep(60); "
    "from segbench.records import write_record; write_record(sys.argv[1], {'model': 'a'})"
)


def test_tmp_file_of_a_killed_record_write_is_removed_only_once_its_owner_is_dead(tmp_path):
    hardware = tmp_path / "results" / "cpu-x"
    child = subprocess.Popen([sys.executable, "-c", STUCK_WRITER, str(hardware / "a.json")], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not (temps := list(hardware.glob(".*.tmp"))) and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        assert len(temps) == 1, "the child never started writing"
        write_record(hardware / "b.json", {"model": "b"})
        assert temps[0].exists()  # its writer is alive: kept
        child.kill()
        child.wait(timeout=30)
        write_record(hardware / "b.json", {"model": "b"})
        assert sorted(p.name for p in hardware.iterdir()) == ["b.json"]  # its writer is dead: removed
    finally:
        child.kill()


def test_only_this_hosts_files_of_dead_writers_are_removed(tmp_path):
    """A process id means nothing on another host (a shared file system), nor in an ownerless name."""
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)
    fd, live = owned_temp_file(tmp_path, "m.json", ".tmp")
    os.close(fd)
    host = live.name.split(".")[-3].split("-")[0]
    other_host = "0" * 8 if host != "0" * 8 else "1" * 8
    dead_here = tmp_path / f".m.json.{host}-{dead_pid}.abc_12.tmp"
    dead_elsewhere = tmp_path / f".m.json.{other_host}-{dead_pid}.abc_12.tmp"
    ownerless = tmp_path / ".m.json.abc_12.tmp"  # as an older segbench named them
    for path in (dead_here, dead_elsewhere, ownerless):
        path.touch()
    remove_abandoned(tmp_path.glob(".*.tmp"))
    assert sorted(tmp_path.iterdir()) == sorted([live, dead_elsewhere, ownerless])
