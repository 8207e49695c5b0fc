"""Entries with the same Build, Test and sweep settings share one measurement (issue 11 item 3): one is built and
timed, the others get their own record pointing at it; mIoU is still measured per entry."""

import hashlib
import json
from pathlib import Path

import pytest
import torch

import segbench.runner
import segbench.timing
from segbench.cli import main
from segbench.errors import SegbenchError
from segbench.records import read_record
from toy_models import TinySegmentor

FAST = ["--device", "cpu", "--images", "2", "--warmup", "1", "--workers", "0"]
SHARED_SECTIONS = ("params", "macs", "latency", "memory", "training")

TWINS = """\
Collections:
- Name: Toy
Models:
- Name: twin_a
  In Collection: Toy
  Build: {callable: 'sweep_models:slow_segmentor', kwargs: {tag: twin, delay: 0.0}}
  Test: {size: [32, 64]}
- Name: other
  In Collection: Toy
  Build: {callable: 'sweep_models:slow_segmentor', kwargs: {tag: other, delay: 0.0}}
  Test: {size: [32, 64]}
- Name: twin_b
  In Collection: Toy
  Build: {callable: 'sweep_models:slow_segmentor', kwargs: {tag: twin, delay: 0.0}}
  Test: {size: [32, 64]}
"""


@pytest.fixture
def twin_zoo(tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "twins.yaml").write_text(TWINS)
    return zoo


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """Builds logged by the toy builder, and calls of the timing loop."""
    log = tmp_path / "builds.log"
    monkeypatch.setenv("SWEEP_BUILD_LOG", str(log))
    calls = {"time_predictions": 0}
    real = segbench.timing.time_predictions

    def timing(*args, **kwargs):
        calls["time_predictions"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(segbench.timing, "time_predictions", timing)
    calls["builds"] = lambda: [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []
    return calls


def bench(zoo, out, *extra) -> int:
    return main(["bench", "--zoo", str(zoo), "--output", str(out), *FAST, *extra])


def record_of(out: Path, model: str) -> dict:
    (path,) = (out / "results").glob(f"*/{model}.json")
    return read_record(path)  # the central check accepts the record


def test_entries_with_the_same_build_and_test_are_measured_once(twin_zoo, tmp_path, counted):
    out = tmp_path / "out"
    assert bench(twin_zoo, out) == 0
    assert sorted(counted["builds"]()) == ["other", "twin"]  # twin_b is not built at all
    assert counted["time_predictions"] == 2 * 2  # warm-up + timed loop of twin_a and other only
    a, b, other = (record_of(out, m) for m in ("twin_a", "twin_b", "other"))
    assert "shared_from" not in a and "shared_from" not in other
    assert b["shared_from"] == "twin_a.json" and b["model"] == "twin_b"
    for section in SHARED_SECTIONS:
        assert b[section] == a[section], section
    assert b["latency"]["samples"] != other["latency"]["samples"]  # other was timed on its own
    page = (out / "model_zoo.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith(("| twin_a", "| twin_b", "| other"))]
    assert [r.split(" | ")[0] for r in rows if "shares" in r] == ["| twin_b (shares twin_a's measurement)"]

    # A re-run: every record current, nothing built or timed.
    assert bench(twin_zoo, out) == 0
    assert sorted(counted["builds"]()) == ["other", "twin"] and counted["time_predictions"] == 4


@pytest.mark.parametrize("damage", ["missing", "corrupt", "remeasured"])
def test_a_shared_record_whose_source_is_gone_or_changed_is_measured_again(twin_zoo, tmp_path, counted, damage):
    out = tmp_path / "out"
    assert bench(twin_zoo, out, "--models", "twin_a", "twin_b") == 0
    (source,) = (out / "results").glob("*/twin_a.json")
    if damage == "missing":
        source.unlink()
    elif damage == "corrupt":
        source.write_text("{not json")
    else:  # a later --force of the source alone: the copy no longer shows its numbers
        assert bench(twin_zoo, out, "--models", "twin_a", "--force") == 0
    builds = len(counted["builds"]())
    assert bench(twin_zoo, out, "--models", "twin_b") == 0
    assert len(counted["builds"]()) == builds + 1  # twin_b measured itself
    assert "shared_from" not in record_of(out, "twin_b")


def test_a_copy_is_not_made_from_a_record_under_other_settings(twin_zoo, tmp_path, counted):
    out = tmp_path / "out"
    assert bench(twin_zoo, out, "--models", "twin_a") == 0
    assert bench(twin_zoo, out, "--models", "twin_b", "--images", "3") == 0
    assert "shared_from" not in record_of(out, "twin_b") and counted["builds"]() == ["twin", "twin"]


def _weights_zoo(tmp_path: Path, server) -> Path:
    """Two entries of one architecture, each with its own (different) published weights, served
    from loopback (a manifest's Weights is a web URL)."""
    root, base_url, _ = server
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    entries = []
    for seed, name in enumerate(("w_a", "w_b")):
        torch.manual_seed(seed)
        path = root / f"{name}.pth"
        torch.save(TinySegmentor(4).state_dict(), path)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        entries.append(
            f"- Name: {name}\n  In Collection: Toy\n  Build: {{callable: 'toy_models:tiny_segmentor', kwargs: {{num_classes: 4}}}}\n"
            f"  Test: {{size: [32, 64]}}\n  Weights: {base_url}/{name}.pth\n  Weights SHA256: {sha}\n"
        )
    (zoo / "w.yaml").write_text("Collections:\n- Name: Toy\nModels:\n" + "".join(entries))
    return zoo


def test_different_weights_share_the_timing_but_each_is_evaluated(tmp_path, synthetic_cityscapes, counted, monkeypatch, server):
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path / "cache"))
    evaluated = []
    real = segbench.runner.evaluate

    def evaluate(model, *args, **kwargs):
        evaluated.append(model.stem.weight.detach().clone())
        return real(model, *args, **kwargs)

    monkeypatch.setattr(segbench.runner, "evaluate", evaluate)
    out = tmp_path / "out"
    assert bench(_weights_zoo(tmp_path, server), out, "--weights", "--data-root", str(synthetic_cityscapes), "--no-report") == 0
    a, b = record_of(out, "w_a"), record_of(out, "w_b")
    assert len(evaluated) == 2 and not torch.equal(evaluated[0], evaluated[1])  # each with its own weights
    assert a["accuracy"] != b["accuracy"] and a["settings"]["weights"] != b["settings"]["weights"]
    assert b["shared_from"] == "w_a.json" and b["latency"] == a["latency"] and counted["time_predictions"] == 2


def test_read_record_checks_shared_from(twin_zoo, tmp_path, counted):
    out = tmp_path / "out"
    assert bench(twin_zoo, out, "--models", "twin_a", "twin_b", "--no-report") == 0
    (path,) = (out / "results").glob("*/twin_b.json")
    for bad in ("../twin_a.json", "/etc/passwd", 3, "twin_a.failed.json", "twin_b.json"):
        record = json.loads(path.read_text())
        record["shared_from"] = bad
        path.write_text(json.dumps(record))
        with pytest.raises(SegbenchError, match="shared_from"):
            read_record(path)
