"""Records: round trip, atomic writes, currency and reuse of hardware-independent figures."""

import errno
import json
import os
import stat
from pathlib import Path

import pytest
import torch

from segbench.cli import main
from segbench.errors import SegbenchError, SegbenchWarning
from segbench.records import (
    SCHEMA_VERSION,
    current_record,
    is_current,
    iter_records,
    macs_per_image,
    read_record,
    record_path,
    reusable_complexity,
    write_record,
)
from segbench.report import load_frame

FAST = ["--device", "cpu", "--images", "3", "--warmup", "1"]


def make_record(**extra):
    """A complete successful record of model 'm' on hardware 'cpu-x'."""
    return {"schema_version": SCHEMA_VERSION, "status": "ok", "model": "m", "spec_hash": "abc",
            "environment": {"hardware": "cpu-x", "device_type": "cpu", "cpu": "x", "date": "2026-01-01"},
            "settings": {"images": 3, "warmup": 1, "input_size": [32, 64]}, "params": {"total": 2, "inference": 1},
            "macs": {"fvcore": 10, "thop": 10, "input_size": [32, 64]}, "memory": {"measured": False},
            "latency": {"unit": "s", "samples": [0.1, 0.25, 0.2]}} | extra  # fmt: skip


def test_round_trip(tmp_path):
    path = record_path(tmp_path, "cpu-x", "m")
    assert path == tmp_path / "cpu-x" / "m.json"
    record = make_record()
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
    record, settings = make_record(), make_record()["settings"]
    assert is_current(record, "abc", settings)
    assert not is_current(record, "abd", settings)
    assert not is_current(record, "abc", settings | {"images": 4})
    assert not is_current(record | {"status": "failed"}, "abc", settings)


def test_complexity_is_reused_across_hardware_only_for_the_same_spec_and_size(tmp_path):
    write_record(record_path(tmp_path, "gpu-a", "m"), make_record(environment=make_record()["environment"] | {"hardware": "gpu-a"}))
    reused = reusable_complexity(tmp_path, "m", "abc", [32, 64])
    assert reused["params"] == {"total": 2, "inference": 1} and reused["source"] == "gpu-a/m.json"
    assert reusable_complexity(tmp_path, "m", "abc", [64, 128]) is None
    assert reusable_complexity(tmp_path, "m", "zzz", [32, 64]) is None


# --- incomplete, corrupt and misplaced records: every reader skips them with one warning line ---

DAMAGE = {
    "no latency": lambda r: r.pop("latency"),
    "no params": lambda r: r.pop("params"),
    "no samples": lambda r: r["latency"].update(samples=[]),
}


def hardware_dir(out):
    (directory,) = (out / "results").iterdir()
    return directory


@pytest.fixture
def measured(toy_zoo, tmp_path):
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), *FAST, "--no-report"]) == 0
    return toy_zoo, out


def warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("segbench: warning:")]


@pytest.mark.parametrize("damage", DAMAGE)
def test_render_and_plot_skip_an_incomplete_record_naming_its_file(measured, capsys, damage):
    zoo, out = measured
    path = hardware_dir(out) / "toy_a.json"
    record = json.loads(path.read_text())
    DAMAGE[damage](record)
    path.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["render", "--zoo", str(zoo), "--output", str(out)]) == 0
    (line,) = warning_lines(capsys.readouterr().err)
    assert str(path) in line and ("latency" in line or "params" in line)
    page = (out / "model_zoo.md").read_text()
    assert "toy_b.json" in page and "toy_a.json" not in page  # toy_a is listed as not measured
    assert main(["plot", "--zoo", str(zoo), "--output", str(out), "--x", "latency", "--format", "png"]) == 0
    assert len(warning_lines(capsys.readouterr().err)) == 1


def test_bench_remeasures_a_corrupt_record_and_measures_the_others(toy_zoo, tmp_path, capsys):
    from segbench.environment import collect_environment

    out = tmp_path / "out"
    hardware = collect_environment(torch.device("cpu"))["hardware"]
    corrupt = record_path(out / "results", hardware, "toy_a")
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "status": "ok", "model": "toy_a"}))
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), *FAST]) == 0
    assert str(corrupt) in capsys.readouterr().err
    assert len(read_record(corrupt)["latency"]["samples"]) == 3  # measured again, now complete
    assert (out / "results" / hardware / "toy_b.json").is_file()


def test_a_record_under_another_models_file_name_is_skipped(measured, capsys):
    zoo, out = measured
    directory = hardware_dir(out)
    (directory / "toy_b.json").write_text((directory / "toy_a.json").read_text())  # model field says toy_a
    (directory / "toy_b.json").rename(directory / "toy_c.json")
    other = out / "results" / "other-hardware"
    other.mkdir()
    (other / "toy_a.json").write_text((directory / "toy_a.json").read_text())  # hardware field says another folder
    with pytest.warns(SegbenchWarning) as caught:
        frame = load_frame(out / "results", zoo)
    messages = {str(w.message).split(":")[0]: str(w.message) for w in caught}
    assert len(caught) == 2
    assert "field 'model'" in messages[str(directory / "toy_c.json")]
    assert "field 'environment.hardware'" in messages[str(other / "toy_a.json")]
    assert frame.loc[frame["model"] == "toy_a", "record"].tolist() == [(directory / "toy_a.json").relative_to(out).as_posix()]


@pytest.mark.parametrize("text", ["{not json", "\xff\xfe", "[" * 100_000, "[]", '{"schema_version": 1}'])
def test_unparseable_records_are_one_line_errors_and_skipped_by_readers(tmp_path, text):
    path = tmp_path / "hw" / "m.json"
    path.parent.mkdir()
    path.write_bytes(text.encode("latin-1") if text == "\xff\xfe" else text.encode())
    with pytest.raises(SegbenchError, match=r"m\.json"):
        read_record(path)
    with pytest.warns(SegbenchWarning, match=r"m\.json"):
        assert list(iter_records(tmp_path)) == []
    with pytest.warns(SegbenchWarning, match=r"m\.json"):
        assert current_record(path, "abc", {}) is None


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_records_follow_the_umask_like_any_new_file(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_record(record_path(tmp_path, "cpu-x", "m"), make_record())
        (tmp_path / "plain").write_text("x")  # what open() gives any other file
    finally:
        os.umask(old)
    mode = stat.S_IMODE(record_path(tmp_path, "cpu-x", "m").stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_a_full_disk_ends_the_sweep_with_one_line_and_the_summary(toy_zoo, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    real_dump, calls = json.dump, []

    def dump_until_the_disk_is_full(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_dump(*args, **kwargs)

    monkeypatch.setattr(json, "dump", dump_until_the_disk_is_full)
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), *FAST]) == 1
    err = capsys.readouterr().err
    directory = hardware_dir(out)
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "FAIL" in line and "No space left on device" in line]
    assert str(directory) in line and "toy_b" in line
    assert "segbench summary" in err and "failed" in err
    written = sorted(p.name for p in directory.iterdir() if p.suffix != ".lock")  # the sweep's per-model locks stay
    assert written == ["toy_a.json"]  # no temp file, no toy_b record
    assert len(read_record(directory / "toy_a.json")["latency"]["samples"]) == 3


def test_a_full_disk_when_the_page_is_written_after_a_sweep_is_one_line(toy_zoo, tmp_path, capsys, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(tmp_path / "out"), *FAST]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "segbench summary" in err
    assert f"segbench: error: {tmp_path / 'out'}: cannot write the page and plots: No space left on device" in err.splitlines()


def test_macs_per_image_of_old_and_new_records():
    new = make_record(macs={"per_image": 90, "per_forward": 10, "fvcore": 10}, settings={"mode": "slide"})
    assert macs_per_image(new) == 90
    # before per-image counts: fvcore's whole-image forward, which is the per-image count in whole mode only
    assert macs_per_image(make_record(settings={"mode": "whole"})) == 10
    assert macs_per_image(make_record(settings={"mode": "slide"})) is None
