"""Sweep order and time budget: breadth order over the real zoo, estimates, a fake clock."""

import json
from pathlib import Path

import pytest

from segbench.cli import main
from segbench.manifest import load_zoo
from segbench.plan import CostModel, PastRun, TimeBudget, breadth_order, canonical_entry, measurement_key, parse_duration

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--device", "cpu", "--images", "2", "--warmup", "1"]


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_breadth_order_over_the_zoo_covers_every_family_before_any_twice():
    specs = load_zoo(ROOT / "zoo")
    ordered = breadth_order(specs)
    assert sorted(s.name for s in ordered) == sorted(s.name for s in specs)  # a permutation
    families = {s.family for s in specs}
    head = [s.family for s in ordered[: len(families)]]
    assert sorted(head) == sorted(families)  # every family once before any family twice
    # then every distinct measurement before any entry that repeats one already ordered
    keys = [measurement_key(s) for s in ordered]
    repeats = [keys[i] in keys[:i] for i in range(len(families), len(keys))]
    assert repeats == sorted(repeats) and any(repeats) and not all(repeats)


def test_canonical_entry_is_the_r50_512x1024_80k_one_or_the_smallest():
    by_family = {}
    for spec in load_zoo(ROOT / "zoo"):
        by_family.setdefault(spec.family, []).append(spec)
    assert canonical_entry(by_family["fcn"]).name == "fcn_r50-d8_4xb2-80k_cityscapes-512x1024"
    assert canonical_entry(by_family["pspnet"]).name == "pspnet_r50-d8_4xb2-80k_cityscapes-512x1024"
    assert canonical_entry(by_family["upernet"]).name == "upernet_r50_4xb2-80k_cityscapes-512x1024"
    # R-50 and a 512x1024 crop, no 80k schedule: the first of the two R-50 Cityscapes entries
    assert canonical_entry(by_family["sssegmentation_upernet"]).name == "upernet_resnet50os8_cityscapes"


def test_parse_duration():
    assert [parse_duration(t) for t in ("90", "90s", "6m", "1.5h")] == [90, 90, 360, 5400]
    for bad in ("", "6x", "-1m", "0"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_estimates_from_sweep_rate_and_the_models_own_record():
    # hardware "gpu" timed m1 at 10 s for 100 units of work (rate 0.1 s/unit); m2 on "cpu" was 2x slower per unit than cpu's rate
    history = [PastRun("m1", "gpu", 10.0, 100.0), PastRun("m2", "cpu", 40.0, 100.0), PastRun("m3", "cpu", 20.0, 200.0)]
    macs = {("m1", (2, 5)): 10, ("m2", (2, 5)): 20, ("m3", (2, 5)): 20}
    cost = CostModel("gpu", history, macs)
    assert cost.rate() == pytest.approx(0.1)
    # cpu rate = 60 s / 300 = 0.2; m2's own = 0.4 -> factor 2; work = 20 MACs x 10 iterations = 200
    assert cost.estimate("m2", (2, 5), 10).seconds == pytest.approx(2 * 0.1 * 200)
    # unknown model and MACs: 40 pixels x the median MACs per pixel (1, 2, 2 -> 2) x 10 iterations
    assert cost.estimate("new", (4, 10), 10).seconds == pytest.approx(0.1 * 40 * 2 * 10)
    cost.observe("m1", (2, 5), 10, 50.0, 10)  # this sweep runs 5x slower than the record: its rate wins
    assert cost.rate() == pytest.approx(0.5)
    assert CostModel("h100", history, macs).estimate("m1", (2, 5), 10).seconds is None  # nothing timed there


def test_budget_starts_the_first_model_then_only_what_fits():
    clock = FakeClock()
    budget = TimeBudget(100, [], clock=clock)
    assert budget.admit("a", "hw", (10, 10), 5)  # no rate yet: starts to learn one
    clock.t += 60  # a took 60 s for 100 px x 5 it (MACs unknown: 1/px)
    budget.finished({"status": "ok", "macs": {"fvcore": 100}}, (10, 10), 5)
    assert not budget.admit("b", "hw", (10, 10), 5)  # 60 s estimated, 40 s left
    assert budget.admit("c", "hw", (5, 5), 5)  # a quarter of a's MACs: 15 s
    clock.t += 50  # took longer than estimated; never stopped
    budget.finished({"status": "ok", "macs": {"fvcore": 25}}, (5, 5), 5)
    assert not budget.admit("d", "hw", (1, 1), 1)  # nothing left
    lines = budget.report()
    assert "c: estimated 15.0 s from its MACs, took 50.0 s (+35.0 s)" in lines
    assert lines[-1].startswith("left undone (2 model(s)") and lines[-1].endswith(": b, d")


def _rewrite_duration(out: Path, model: str, seconds: float) -> None:
    (path,) = (out / "results").glob(f"*/{model}.json")
    record = json.loads(path.read_text())
    path.write_text(json.dumps(dict(record, duration_s=seconds)))


def test_bench_time_budget_leaves_what_does_not_fit_exits_0_and_resumes(toy_zoo, tmp_path, monkeypatch, capsys):
    import segbench.plan
    import segbench.runner

    out = tmp_path / "out"
    clock = FakeClock()
    monkeypatch.setattr(segbench.plan, "now", clock)
    real = segbench.runner.measure_or_failure

    def slow(*args, **kwargs):  # every model takes 100 s on the fake clock
        clock.t += 100
        return real(*args, **kwargs)

    monkeypatch.setattr(segbench.runner, "measure_or_failure", slow)
    args = ["bench", "--zoo", str(toy_zoo), "--output", str(out), *FAST, "--time-budget", "150s"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert sorted(p.name for p in (out / "results").glob("*/*.json")) == ["toy_a.json"]  # toy_b's ~100 s > 50 s left
    assert "left undone (1 model(s)" in err and err.rstrip().endswith("toy_b")
    assert (out / "model_zoo.md").is_file()  # the page from the records it has
    # toy_a overran an estimate-free start: not killed, recorded
    assert "toy_a: took 100.0 s (no estimate" in err
    # resume: toy_a current and skipped; toy_b estimated from toy_a's record (rewritten to 10 s) fits
    _rewrite_duration(out, "toy_a", 10.0)
    assert main(args) == 0
    err = capsys.readouterr().err
    assert sorted(p.name for p in (out / "results").glob("*/*.json")) == ["toy_a.json", "toy_b.json"]
    assert "left undone" not in err and "toy_b: estimated" in err


def test_order_breadth_is_the_default_for_all_under_a_budget(toy_zoo, tmp_path, capsys):
    # toy_b is canonical? Neither follows the conventions; both have the same test pixels: manifest order.
    # A second family whose only entry comes last in the zoo must come second under breadth order.
    # Other class counts: a copy of toy's networks would share their measurement and never be budgeted.
    zz = (toy_zoo / "toy.yaml").read_text().replace("toy_a", "zz_a").replace("toy_b", "zz_b")
    (toy_zoo / "zz.yaml").write_text(zz.replace("num_classes: 4", "num_classes: 5").replace("num_classes: 6", "num_classes: 7"))
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), *FAST, "--time-budget", "1h", "--no-report"]) == 0
    err = capsys.readouterr().err
    done = [line.split(":")[0] for line in err.splitlines() if ": took " in line or ": estimated " in line]
    assert done == ["toy_a", "zz_a", "toy_b", "zz_b"]
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), *FAST, "--force", "--no-report", "--time-budget", "1h",
                 "--order", "manifest"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    done = [line.split(":")[0] for line in err.splitlines() if ": took " in line or ": estimated " in line]
    assert done == ["toy_a", "toy_b", "zz_a", "zz_b"]
