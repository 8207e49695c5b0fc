"""--isolate: each model in a fresh process; a crash, a hard OOM or a raised OOM fail only that model."""

import json

from segbench.cli import main

ISOLATED = """\
- Name: toy_crash
  In Collection: Toy
  Build: {callable: 'toy_models:crashing_segmentor'}
- Name: toy_oom_crash
  In Collection: Toy
  Build: {callable: 'toy_models:oom_crashing_segmentor'}
- Name: toy_oom
  In Collection: Toy
  Build: {callable: 'toy_models:oom_raising_segmentor'}
"""


def test_isolated_sweep_records_crashes_and_ooms_and_measures_the_rest(toy_zoo, tmp_path, capsys):
    (toy_zoo / "toy.yaml").write_text((toy_zoo / "toy.yaml").read_text() + ISOLATED)
    out = tmp_path / "out"
    args = ["bench", "--zoo", str(toy_zoo), "--output", str(out), "--models", "toy_crash", "toy_oom_crash", "toy_oom", "toy_a",
            "--isolate", "--device", "cpu", "--images", "2", "--warmup", "1", "--no-report"]  # fmt: skip
    assert main(args) == 1
    found = {p.name: json.loads(p.read_text()) for p in (out / "results").glob("*/*.json")}
    assert sorted(found) == ["toy_a.json", "toy_crash.failed.json", "toy_oom.failed.json", "toy_oom_crash.failed.json"]

    good = found["toy_a.json"]
    assert good["status"] == "ok" and good["isolated"] and len(good["latency"]["samples"]) == 2
    assert good["macs"]["fvcore"] == 16 * 32 * (8 * 3 * 9 + 4 * 8)

    crash = found["toy_crash.failed.json"]["error"]
    assert crash["kind"] == "crashed" and crash["exit_code"] == 3
    assert crash["message"] == "isolated process exited with code 3 without writing a record"
    hard_oom = found["toy_oom_crash.failed.json"]["error"]
    assert hard_oom["kind"] == "out_of_memory" and hard_oom["exit_code"] == 1 and "Tried to allocate 2.00 GiB" in hard_oom["message"]
    raised_oom = found["toy_oom.failed.json"]["error"]
    assert raised_oom["kind"] == "out_of_memory" and "exit_code" not in raised_oom  # the child recorded it itself
    assert "3 of 4 model(s) failed" in capsys.readouterr().err
