"""Time left in a sweep: the estimator on hand-computed numbers, the per-model work, the progress column."""

import time
from types import SimpleNamespace

import pytest
import torch
import yaml

from segbench.errors import SegbenchWarning
from segbench.eta import SweepPace, TimeLeftColumn, Work, model_work, seconds_left
from segbench.manifest import load_manifest
from segbench.records import SCHEMA_VERSION, write_record
from segbench.runner import BenchSettings


def test_nothing_measured_yet_gives_no_estimate():
    assert seconds_left([], [Work(100)]) is None


def test_pixels_set_the_pace_when_no_macs_are_known():
    # 10 s for 100 pixels: 0.1 s per pixel; 300 + 200 pixels left: 50 s
    assert seconds_left([(Work(100), 10.0)], [Work(300), Work(200)]) == pytest.approx(50.0)


def test_macs_set_the_pace_and_models_without_macs_get_the_known_macs_per_pixel():
    # known MACs: 1000 over 100 px and 4000 over 50 px -> 5000 / 150 MACs per pixel
    # pace: 20 s / 1000 MACs = 0.02 s per MAC; left: 200 px * 5000/150 + 4000 MACs = 10666.67 MACs -> 213.33 s
    done = [(Work(100, macs=1000), 20.0)]
    assert seconds_left(done, [Work(200), Work(50, macs=4000)]) == pytest.approx(0.02 * (200 * 5000 / 150 + 4000))
    assert seconds_left(done, []) == 0.0


def load_specs(tmp_path, *tests: dict) -> list:
    """One toy model per Test section, named m0, m1, ..."""
    models = [{"Name": f"m{i}", "In Collection": "Toy", "Build": {"callable": "toy_models:tiny_segmentor"}, "Test": test}
              for i, test in enumerate(tests)]  # fmt: skip
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump({"Collections": [{"Name": "Toy"}], "Models": models}))
    return load_manifest(tmp_path / "toy.yaml")


def test_work_is_the_tested_pixels_with_every_sliding_window(tmp_path):
    settings = BenchSettings(device=torch.device("cpu"))
    whole, slide = load_specs(tmp_path, {"size": [1024, 2048]},
                              {"size": [1024, 2048], "mode": "slide", "crop": [769, 769], "stride": [513, 513]})  # fmt: skip
    work = model_work([whole, slide], settings, tmp_path / "results")
    assert work["m0"] == Work(1024 * 2048)
    # rows: (1024 - 769 + 512) // 513 + 1 = 2, columns: (2048 - 769 + 512) // 513 + 1 = 4, each a full 769x769 crop
    assert work["m1"] == Work(8 * 769 * 769)
    # MACs from an earlier record of the same spec at the same size (any hardware); a corrupt record is no MACs, no error
    write_record(tmp_path / "results" / "other-hw" / "m0.json", {
        "schema_version": SCHEMA_VERSION, "status": "ok", "model": "m0", "spec_hash": whole.spec_hash(),
        "environment": {"hardware": "other-hw", "device_type": "cpu", "cpu": "x", "date": "2026-01-01"},
        "settings": {"images": 3, "warmup": 1, "input_size": [1024, 2048]}, "memory": {"measured": False},
        "params": {"inference": 1, "total": 1}, "macs": {"fvcore": 123, "thop": 123, "input_size": [1024, 2048]},
        "latency": {"unit": "s", "samples": [0.1]},
    })  # fmt: skip
    (tmp_path / "results" / "other-hw" / "m1.json").write_text("{not json")
    with pytest.warns(SegbenchWarning, match="m1.json"):
        work = model_work([whole, slide], settings, tmp_path / "results")
    assert work["m0"] == Work(1024 * 2048, macs=123) and work["m1"] == Work(8 * 769 * 769)
    override = BenchSettings(device=torch.device("cpu"), input_size=(512, 1024))
    assert model_work([whole], override, tmp_path / "results")["m0"] == Work(512 * 1024)


def test_the_pace_counts_measured_models_only_and_drops_skipped_and_failed_ones():
    now = [0.0]
    work = {"a": Work(100), "b": Work(100), "c": Work(300), "d": Work(50)}
    pace = SweepPace(work, clock=lambda: now[0])
    outcome = lambda name, status, macs=None: SimpleNamespace(  # noqa: E731
        spec=SimpleNamespace(name=name), status=status, record={"macs": {"fvcore": macs}} if macs else {}
    )  # under torchrun only rank 0's records have MACs
    now[0] = 0.5
    assert pace.finished(outcome("a", "skipped")) is None  # no measurement yet
    now[0] = 10.5  # b measured in 10 s: 0.1 s per pixel
    assert pace.finished(outcome("b", "ok")) == pytest.approx(10.5 + 0.1 * (300 + 50))
    now[0] = 11.0  # d failed after 0.5 s: not a pace, no longer to do
    assert pace.finished(outcome("d", "failed")) == pytest.approx(11.0 + 0.1 * 300)


def test_the_column_counts_down_to_the_estimated_finish():
    column = TimeLeftColumn()
    assert column.render(SimpleNamespace(fields={}, finished=False)).plain == ""
    task = SimpleNamespace(fields={"finish_at": time.monotonic() + 3725.5}, finished=False)
    assert column.render(task).plain == "~1:02:05 left"
    assert column.render(SimpleNamespace(fields={"finish_at": time.monotonic() - 5}, finished=False)).plain == "~0:00:00 left"
    assert column.render(SimpleNamespace(fields={"finish_at": time.monotonic() + 9}, finished=True)).plain == ""


def test_a_measured_model_brings_its_macs_to_the_pace():
    now = [0.0]
    pace = SweepPace({"a": Work(100), "b": Work(300)}, clock=lambda: now[0])
    now[0] = 10.0  # a: 1000 MACs over 100 px in 10 s -> 10 MACs per pixel, 0.01 s per MAC; b: 300 px * 10 = 3000 MACs -> 30 s
    measured = SimpleNamespace(spec=SimpleNamespace(name="a"), status="ok", record={"macs": {"fvcore": 1000}})
    assert pace.finished(measured) == pytest.approx(10.0 + 30.0)
