"""Where a sweep's time goes (issue 11 item 5): each record keeps the seconds of its phases, and the summary says
which share of the wall time the timed and warm-up passes took."""

import json
import re

import pytest

from segbench.cli import main
from segbench.errors import SegbenchError
from segbench.records import read_record

FAST = ["--device", "cpu", "--images", "3", "--warmup", "2", "--no-report"]


def test_records_keep_their_phases_and_the_summary_prints_the_efficiency(toy_zoo, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), *FAST]) == 0
    err = " ".join(capsys.readouterr().err.split())
    passes = 0.0
    for path in sorted((out / "results").glob("*/*.json")):
        record = read_record(path)
        phases = record["phase_seconds"]
        assert {"build", "macs", "warmup", "timed"} <= set(phases)
        assert sum(record["latency"]["samples"]) <= phases["timed"] <= record["duration_s"]  # the samples lie inside the loop
        assert sum(phases.values()) <= record["duration_s"] + 1e-3
        passes += phases["warmup"] + phases["timed"]
    match = re.search(r"sweep efficiency (\d+)%: timed \+ warm-up passes ([\d.]+) s of ([\d.]+) s wall time", err)
    assert match, err
    assert float(match[2]) == pytest.approx(passes, abs=0.06)
    wall = float(match[3])  # rounded to 0.1 s: the share lies between those of its bounds
    assert 100 * passes / (wall + 0.05) - 1 <= int(match[1]) <= 100 * passes / max(wall - 0.05, 1e-3) + 1, match[0]
    assert "2 model(s) measured" in err

    # Everything current: nothing measured, no efficiency line.
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), *FAST]) == 0
    assert "sweep efficiency" not in capsys.readouterr().err


def test_read_record_checks_phase_seconds(toy_zoo, tmp_path):
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), *FAST, "--models", "toy_a"]) == 0
    (path,) = (out / "results").glob("*/toy_a.json")
    record = json.loads(path.read_text())
    record["phase_seconds"]["timed"] = -1
    path.write_text(json.dumps(record))
    with pytest.raises(SegbenchError, match="phase_seconds"):
        read_record(path)


def test_a_rerun_with_every_record_current_draws_no_plot_unless_something_changed(toy_zoo, tmp_path, monkeypatch):
    import segbench.plots

    out = tmp_path / "out"
    args = ["bench", "--zoo", str(toy_zoo), "--output", str(out), "--device", "cpu", "--images", "2", "--warmup", "1"]
    assert main(args) == 0
    plots = sorted(p.name for p in (out / "plots").iterdir() if not p.name.startswith("."))
    assert plots
    real = segbench.plots.plot_all
    drawn = []

    def counting(*a, **k):
        drawn.append(1)
        return real(*a, **k)

    monkeypatch.setattr(segbench.plots, "plot_all", counting)
    assert main(args) == 0 and drawn == []  # same records, same frame: the plots stand
    (out / "plots" / plots[0]).unlink()
    assert main(args) == 0 and drawn == [1]  # one is missing: drawn again
    assert (out / "plots" / plots[0]).is_file()
    assert main([*args, "--force"]) == 0 and drawn == [1, 1]  # new records (new samples): a new frame
