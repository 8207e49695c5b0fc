"""benchmarks/gpu_window.py end to end on the CPU with two toy models; a sweep without fvcore and thop."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from segbench import complexity
from segbench.cli import main
from segbench.formatting import fixed

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_window.py"


def test_gpu_window_on_cpu_packs_records_logs_and_summary_and_merges_back(toy_zoo, tmp_path, capsys):
    out, archives = tmp_path / "window", tmp_path / "archives"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT)]))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), "--budget", "10m", "--archive-dir", str(archives), "--device", "cpu",
         "--no-install", "--skip-gpu-tests", "--fidelity-args", f"--zoo {toy_zoo} --model toy_a --images 2 --warmup 1 --repeats 1",
         "--", "--zoo", str(toy_zoo), "--images", "2", "--warmup", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    (archive,) = archives.glob("segbench-window-*.tar.gz")
    top = archive.name.removesuffix(".tar.gz")
    hardware = next((out / "results").iterdir()).name
    with tarfile.open(archive) as tar:
        names = sorted(tar.getnames())
        packed = {n: tar.extractfile(n).read() for n in names}
    assert names == sorted(
        [f"{top}/results/{hardware}/toy_a.json", f"{top}/results/{hardware}/toy_b.json", f"{top}/summary.md", f"{top}/model_zoo.md",
         f"{top}/logs/0-environment.log", f"{top}/logs/1-latency-fidelity.log", f"{top}/logs/2-sweep.log"]
    )  # fmt: skip
    record = json.loads(packed[f"{top}/results/{hardware}/toy_a.json"])
    assert record["isolated"] and record["validity"]["verdict"] == "not applicable"
    summary = packed[f"{top}/summary.md"].decode()
    assert "| sweep | 0 |" in summary and f"results/{hardware}/toy_b.json`: ok, not applicable" in summary
    assert "torch: " in packed[f"{top}/logs/0-environment.log"].decode()
    # merge round trip into another output root, then again: nothing newer to write
    home = tmp_path / "home"
    assert main(["merge", str(archive), "--output", str(home), "--zoo", str(toy_zoo)]) == 0
    for name in ("toy_a.json", "toy_b.json"):
        assert (home / "results" / hardware / name).read_bytes() == (out / "results" / hardware / name).read_bytes()
    assert (home / "model_zoo.md").is_file()
    assert main(["merge", str(archive), "--output", str(home), "--zoo", str(toy_zoo)]) == 0
    assert "0 record(s) merged, 2 kept" in capsys.readouterr().err


def test_a_sweep_without_fvcore_and_thop_records_them_unavailable(toy_zoo, tmp_path, monkeypatch):
    monkeypatch.setattr(complexity, "_SHARED", {})  # no count of this architecture kept from an earlier test
    for name in ("fvcore", "fvcore.nn", "thop"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), "--models", "toy_a", "--device", "cpu", "--images", "2",
                 "--warmup", "1"]) == 0  # fmt: skip
    (path,) = (out / "results").glob("*/toy_a.json")
    macs = json.loads(path.read_text())["macs"]
    assert sorted(macs["cross_check_unavailable"]) == ["fvcore", "thop"] and "fvcore" not in macs and "thop" not in macs
    assert macs["per_image"] == 16 * 32 * (8 * 3 * 9 + 4 * 8)  # by hand: conv 3x3 3->8 at 16x32, conv 1x1 8->4
    assert f"| {fixed(16 * 32 * (8 * 3 * 9 + 4 * 8) / 1e9, 1)} |" in (out / "model_zoo.md").read_text()
