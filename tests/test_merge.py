"""segbench merge: an archive's records into results/, refusing what is unsafe, invalid or older."""

import io
import json
import tarfile

from segbench.cli import main
from segbench.merge import merge_archive


def record(model="toy_a", date="2026-12-01T10:00:00+00:00", **overrides):
    """A complete record, as the readers validate it, of `model` on an H200."""
    return {"schema_version": 1, "status": "ok", "model": model, "spec_hash": "abc",
            "settings": {"device_type": "cuda", "images": 2, "warmup": 1, "input_size": [32, 64]},
            "environment": {"hardware": "nvidia-h200", "device_type": "cuda", "cpu": "x", "gpu_name": "NVIDIA H200", "date": date},
            "params": {"total": 2, "inference": 1}, "macs": {"fvcore": 10, "thop": 10, "input_size": [32, 64]},
            "memory": {"measured": False}, "latency": {"unit": "s", "samples": [0.01, 0.02]}} | overrides  # fmt: skip


def archive(path, members):
    """members: name -> record (dict), bytes, or ("symlink", target)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, content[1]
                tar.addfile(info)
                continue
            data = content if isinstance(content, bytes) else json.dumps(content).encode()
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_merge_writes_new_keeps_newer_and_refuses_the_rest(tmp_path):
    results = tmp_path / "home" / "results"
    (results / "nvidia-h200").mkdir(parents=True)
    (results / "nvidia-h200" / "toy_b.json").write_text(json.dumps(record("toy_b", "2026-12-02T00:00:00+00:00")))
    top = "segbench-window-x"
    path = archive(tmp_path / "w.tar.gz", {
        f"{top}/results/nvidia-h200/toy_a.json": record(),
        f"{top}/results/nvidia-h200/toy_b.json": record("toy_b", "2026-12-01T23:00:00+01:00"),  # older than the one at home
        f"{top}/results/nvidia-h200/toy_c.json": record("toy_c", schema_version=2),
        f"{top}/results/nvidia-h200/toy_d.json": record("toy_e"),  # name does not match the file
        f"{top}/results/nvidia-h200/toy_f.json": record("toy_f", latency={"samples": []}),
        f"{top}/results/nvidia-h200/toy_g.json": b"{not json",
        f"{top}/results/../../../evil/x.json": record("x"),  # parts[-3] is '..': not a results member at all
        "../results/nvidia-h200/toy_h.json": record("toy_h"),
        f"{top}/results/nvidia-h200/toy_i.json": ("symlink", "/etc/passwd"),
        f"{top}/results/nvidia-h200/.hidden.json": record(".hidden"),
        f"{top}/logs/0-sweep.log": b"log",
    })  # fmt: skip
    result = merge_archive(path, results)
    assert result.written == ["results/nvidia-h200/toy_a.json"]
    assert result.kept == ["results/nvidia-h200/toy_b.json"]
    assert sorted(result.refused) == sorted([
        "results/nvidia-h200/toy_c.json: field 'schema_version': expected 1, got 2",
        "results/nvidia-h200/toy_d.json: field 'model': expected the model its file name 'toy_d.json' names, got 'toy_e'",
        "results/nvidia-h200/toy_f.json: field 'latency.samples': expected a non-empty list of positive numbers (seconds), got []",
        "results/nvidia-h200/toy_g.json: not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        "results/nvidia-h200/toy_h.json: unsafe name",
        "results/nvidia-h200/toy_i.json: not a regular file",
        "results/nvidia-h200/.hidden.json: unsafe name",
    ])  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "home").rglob("*") if p.is_file()) == ["toy_a.json", "toy_b.json"]
    assert json.loads((results / "nvidia-h200" / "toy_b.json").read_text())["environment"]["date"].startswith("2026-12-02")
    assert not (tmp_path / "evil").exists()


def test_a_newer_record_replaces_an_older_one(tmp_path):
    results = tmp_path / "results"
    (results / "nvidia-h200").mkdir(parents=True)
    (results / "nvidia-h200" / "toy_a.json").write_text(json.dumps(record(date="2026-11-30T00:00:00+00:00")))
    assert merge_archive(archive(tmp_path / "w.tar.gz", {"w/results/nvidia-h200/toy_a.json": record()}), results).written
    assert json.loads((results / "nvidia-h200" / "toy_a.json").read_text())["environment"]["date"] == "2026-12-01T10:00:00+00:00"


def test_a_corrupt_archive_is_refused_in_one_line(tmp_path, capsys):
    good = archive(tmp_path / "w.tar.gz", {f"w/results/nvidia-h200/toy_{i}.json": record(f"toy_{i}") for i in range(40)})
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert main(["merge", str(bad), "--output", str(tmp_path / "home"), "--no-report"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"segbench: error: {bad}: not a readable .tar.gz archive")
    assert not (tmp_path / "home" / "results").exists()  # nothing merged from a half archive
    (tmp_path / "plain.tar.gz").write_text("hello")
    assert main(["merge", str(tmp_path / "plain.tar.gz"), "--output", str(tmp_path / "home")]) == 1
    assert "not a readable .tar.gz archive" in capsys.readouterr().err
