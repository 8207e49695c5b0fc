"""Records: round trip, atomic writes, currency and reuse of hardware-independent figures."""

import json

import pytest

from segbench.errors import SegbenchError
from segbench.records import (
    SCHEMA_VERSION,
    is_current,
    iter_records,
    macs_per_image,
    read_record,
    record_path,
    reusable_complexity,
    write_record,
)


def make_record(**extra):
    return {"schema_version": SCHEMA_VERSION, "status": "ok", "model": "m", "spec_hash": "abc",
            "settings": {"images": 3}, "params": {"total": 2, "inference": 1},
            "macs": {"fvcore": 10, "input_size": [32, 64]}} | extra  # fmt: skip


def test_round_trip(tmp_path):
    path = record_path(tmp_path, "cpu-x", "m")
    assert path == tmp_path / "cpu-x" / "m.json"
    record = make_record(latency={"samples": [0.1, 0.25]})
    write_record(path, record)
    assert read_record(path) == record
    assert [p for p, _ in iter_records(tmp_path)] == [path]


def test_failed_write_keeps_the_old_record_and_leaves_no_temp_file(tmp_path):
    path = record_path(tmp_path, "cpu-x", "m")
    write_record(path, make_record())
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_record(path, make_record(bad=object()))  # not JSON-serializable, fails mid-write
    with pytest.raises(ValueError):
        write_record(path, make_record(bad=float("nan")))  # NaN is not valid JSON
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.json"]


def test_unreadable_and_wrong_schema_are_clear_errors(tmp_path):
    path = tmp_path / "hw" / "m.json"
    path.parent.mkdir()
    path.write_text("{not json")
    with pytest.raises(SegbenchError, match="m.json: unreadable record"):
        read_record(path)
    path.write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(SegbenchError, match="field 'schema_version': expected 1, got 99"):
        read_record(path)


def test_is_current():
    record = make_record()
    assert is_current(record, "abc", {"images": 3})
    assert not is_current(record, "abd", {"images": 3})
    assert not is_current(record, "abc", {"images": 4})
    assert not is_current(record | {"status": "failed"}, "abc", {"images": 3})


def test_complexity_is_reused_across_hardware_only_for_the_same_spec_and_size(tmp_path):
    write_record(record_path(tmp_path, "gpu-a", "m"), make_record())
    reused = reusable_complexity(tmp_path, "m", "abc", [32, 64])
    assert reused["params"] == {"total": 2, "inference": 1} and reused["source"] == "gpu-a/m.json"
    assert reusable_complexity(tmp_path, "m", "abc", [64, 128]) is None
    assert reusable_complexity(tmp_path, "m", "zzz", [32, 64]) is None


def test_macs_per_image_of_old_and_new_records():
    new = make_record(macs={"per_image": 90, "per_forward": 10, "fvcore": 10}, settings={"mode": "slide"})
    assert macs_per_image(new) == 90
    # before per-image counts: fvcore's whole-image forward, which is the per-image count in whole mode only
    assert macs_per_image(make_record(settings={"mode": "whole"})) == 10
    assert macs_per_image(make_record(settings={"mode": "slide"})) is None
