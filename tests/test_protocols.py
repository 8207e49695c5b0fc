"""Timing protocols: what each times, the loop kinds, steady-state warm-up, duration calibration, recorded settings."""

import dataclasses
import json
import statistics
from pathlib import Path

import pytest
import torch
from torch import nn

from segbench import timing
from segbench.cli import main
from segbench.compare import compare_records, compare_result_sets
from segbench.inference import InferenceSettings
from segbench.protocols import AUTO, PROTOCOLS, STAGES, Protocol, get_protocol, protocol_from_settings, protocol_name
from segbench.errors import SegbenchError
from segbench.timing import calibrated_iterations, is_steady, prediction_stages, time_predictions, warm_up
from toy_models import tiny_segmentor

CPU = torch.device("cpu")


def image(h: int = 32, w: int = 64) -> torch.Tensor:
    return torch.randint(0, 256, (1, 3, h, w), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_each_protocol_runs_the_stages_up_to_its_span_and_a_sample_is_the_span(name):
    protocol = PROTOCOLS[name]
    stages = prediction_stages(tiny_segmentor(4).eval(), InferenceSettings(test_size=(32, 64)), protocol=protocol)
    result = time_predictions(stages, [image()], CPU, iterations=3, sync_each=protocol.sync_each)
    ran = [stage for stage in result["stages"] if stage != "clock"]
    assert ran == list(protocol.stages_run() if protocol.sync_each else protocol.stages_timed())
    assert result["timed"] == list(protocol.stages_timed())
    for i, sample in enumerate(result["samples"]):
        assert sample == pytest.approx(sum(result["stages"][s][i] for s in protocol.stages_timed()), rel=1e-3, abs=2e-5)
    with torch.inference_mode():
        output = stages(image())
    last = protocol.timed[1]
    # what leaves the last stage: logits at the network's stride (16×32 here), at the input size, or labels
    expected = {"forward": (1, 4, 16, 32), "resize": (1, 4, 32, 64), "argmax": (1, 32, 64), "copy_out": (1, 32, 64)}[last]
    assert tuple(output.shape) == expected and output.device.type == "cpu"
    if not protocol.sync_each:
        assert result["loop"]["iterations"] == 3 and result["loop"]["seconds"] >= sum(result["samples"]) * 0.5


class WideLogits(nn.Module):
    """A cheap network whose logits are large at the input size: resize and argmax dominate a prediction."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 64, 1)

    def forward(self, x):
        return self.head(x[..., ::8, ::8])


def test_forward_only_is_never_slower_than_forward_resize_and_argmax():
    test = InferenceSettings(test_size=(256, 512))
    model = WideLogits().eval()
    forward_only = prediction_stages(model, test, protocol=PROTOCOLS["ddrnet"])
    full = prediction_stages(model, test, protocol=PROTOCOLS["mmseg"])
    lows = {"forward_only": [], "full": []}
    for _ in range(3):  # interleaved, so a burst of load hits both
        lows["forward_only"].append(min(time_predictions(forward_only, [image(256, 512)], CPU, iterations=5, sync_each=False)["samples"]))
        lows["full"].append(min(time_predictions(full, [image(256, 512)], CPU, iterations=5)["samples"]))
    assert min(lows["forward_only"]) < min(lows["full"])


def test_nearest_resize_is_used_where_the_protocol_says():
    logits = torch.arange(8.0).view(1, 2, 2, 2)
    stdc = prediction_stages(lambda x: logits, InferenceSettings(test_size=(4, 4)), protocol=PROTOCOLS["stdc"])
    resized = stdc.run(image(4, 4), ["copy_in", "preprocess", "forward", "resize"])
    assert torch.equal(resized, torch.nn.functional.interpolate(logits, size=(4, 4), mode="nearest"))
    assert resized[0, 0, 0, 1] == 0 and resized[0, 0, 0, 2] == 1  # copies, no blend


def test_is_steady_on_synthetic_series():
    cold = [0.050, 0.030, 0.020, 0.012, 0.011, 0.0105, 0.0102, 0.0101, 0.0100, 0.0100]
    assert not is_steady(cold, window=5, tolerance=0.02)  # median 0.012 before vs 0.0101 after: 16% apart
    settled = cold + [0.0100, 0.0101, 0.0099, 0.0100, 0.0100]
    assert is_steady(settled, window=5, tolerance=0.02)
    assert not is_steady(settled[:9], window=5, tolerance=0.02)  # fewer than two windows


def test_auto_warmup_stops_when_the_series_settles_and_keeps_the_trace(monkeypatch):
    series = iter([0.5, 0.3, 0.2, 0.15, 0.12] + [0.1] * 100)

    def fake(stages, images, device, *, iterations, sync_each=True, on_step=None):
        return {"samples": [next(series) for _ in range(iterations)]}

    monkeypatch.setattr(timing, "time_predictions", fake)
    warm = warm_up(None, [], CPU, AUTO)
    # at 13 passes the window before the last is [0.15, 0.12, 0.1, 0.1, 0.1]: median 0.1, as the last window's
    assert warm["steady"] and warm["iterations"] == 13 and warm["trace"][:5] == [0.5, 0.3, 0.2, 0.15, 0.12]
    assert warm["auto"]["window"] == 5 and warm["auto"]["tolerance"] == 0.02


def test_auto_warmup_that_never_settles_stops_at_the_cap_and_says_so(monkeypatch):
    counter = iter(range(1, 10**6))
    monkeypatch.setattr(timing, "time_predictions", lambda *a, iterations, **k: {"samples": [0.001 * next(counter) for _ in range(iterations)]})
    monkeypatch.setitem(timing.STEADY, "max_iterations", 30)
    warm = warm_up(None, [], CPU, AUTO)
    assert warm["iterations"] == 30 and warm["steady"] is False


def test_a_duration_protocol_calibrates_the_count_that_fills_it(monkeypatch):
    runs = []

    def fake(stages, images, device, *, iterations, sync_each=True, on_step=None):
        runs.append(iterations)
        return {"samples": [0.1] * iterations}

    monkeypatch.setattr(timing, "time_predictions", fake)
    count, calibration = calibrated_iterations(None, [], CPU, 6.0)
    assert runs == [1, 2, 4, 8, 16] and calibration == {"iterations": 16, "seconds": pytest.approx(1.6)}
    assert count == 60  # 6 s at 0.1 s per pass


def test_protocols_validate_and_round_trip():
    with pytest.raises(ValueError, match="in order"):
        Protocol("x", source="s", timed=("argmax", "forward"))
    with pytest.raises(ValueError, match="must include forward"):
        Protocol("x", source="s", timed=("copy_in", "preprocess"))
    with pytest.raises(ValueError, match="exactly one"):
        Protocol("x", source="s", images=None)
    for protocol in PROTOCOLS.values():
        assert protocol.source and protocol.stages_run() == STAGES[: STAGES.index(protocol.timed[1]) + 1]
        assert protocol_from_settings(json.loads(json.dumps(protocol.as_settings()))) == protocol
    changed = PROTOCOLS["ddrnet"].with_overrides(images=3, warmup=None)
    assert changed.images == 3 and changed.min_seconds is None and changed.warmup == 10 and "images" in changed.overrides
    with pytest.raises(SegbenchError, match="unknown protocol 'nope'; known: mmseg, ddrnet"):
        get_protocol("nope")
    assert protocol_name({}) == "mmseg"  # a record from before protocols


def bench(zoo: Path, out: Path, *extra: str) -> int:
    return main(["bench", "--zoo", str(zoo), "--output", str(out), "--models", "toy_a", "--device", "cpu", "--no-report", *extra])


def only_record(out: Path) -> dict:
    (path,) = (out / "results").glob("*/toy_a.json")
    return json.loads(path.read_text())


def test_bench_records_the_protocol_and_times_what_it_says(toy_zoo, tmp_path):
    assert bench(toy_zoo, tmp_path / "a", "--protocol", "ddrnet", "--images", "4", "--warmup", "2") == 0
    record = only_record(tmp_path / "a")
    protocol = record["settings"]["protocol"]
    assert protocol["name"] == "ddrnet" and protocol["fold_bn"] and protocol["sync_each"] is False
    assert protocol["overrides"] == ["images", "min_seconds", "warmup"]
    latency = record["latency"]
    assert set(latency["stages"]) == {"clock", "forward"} and len(latency["samples"]) == 4 and latency["loop"]["iterations"] == 4
    assert latency["warmup"]["iterations"] == 2 and len(latency["warmup"]["trace"]) == 2
    assert record["bn_folding"]["folded"] == 0 and "as built" in record["bn_folding"]["params_and_macs"]  # the toy has no BatchNorm
    assert record["params"]["inference"] == sum(p.numel() for p in tiny_segmentor(4).parameters())


def test_bench_auto_warmup_and_a_duration_protocol_on_the_cpu(toy_zoo, tmp_path, monkeypatch):
    monkeypatch.setitem(PROTOCOLS, "stdc", dataclasses.replace(PROTOCOLS["stdc"], min_seconds=1.0))  # 6 s is long for a test
    monkeypatch.setattr(timing, "CALIBRATION_SECONDS", 0.25)
    assert bench(toy_zoo, tmp_path / "a", "--protocol", "stdc", "--warmup", "auto") == 0
    record = only_record(tmp_path / "a")
    settings, latency = record["settings"], record["latency"]
    assert settings["images"] is None and settings["warmup"] == "auto" and settings["cudnn_benchmark"] is True
    assert latency["warmup"]["steady"] in (True, False) and latency["warmup"]["iterations"] >= 10
    calibration = latency["calibration"]
    per_pass = calibration["seconds"] / calibration["iterations"]
    assert calibration["seconds"] >= 0.25 or calibration["iterations"] == 4096  # doubled until it took CALIBRATION_SECONDS
    # the count that fills 1 s at the calibrated pace (what the passes then take varies with the machine's load)
    assert len(latency["samples"]) == pytest.approx(1.0 / per_pass, rel=0.01, abs=1) and latency["loop"]["iterations"] == len(latency["samples"])
    assert statistics.median(latency["samples"]) > 0


def test_compare_never_pairs_different_protocols(toy_zoo, tmp_path):
    assert bench(toy_zoo, tmp_path / "a", "--images", "6", "--warmup", "1") == 0
    assert bench(toy_zoo, tmp_path / "b", "--protocol", "ddrnet", "--images", "6", "--warmup", "1") == 0
    row = compare_records(only_record(tmp_path / "a"), only_record(tmp_path / "b"))
    assert "protocol mmseg vs ddrnet" in row["settings_differ"] and row["latency"] is None
    (paired,), _ = compare_result_sets(tmp_path / "a", tmp_path / "b")  # one folder a side: paired, shown, never judged
    assert paired["latency"] is None and "protocol mmseg vs ddrnet" in paired["settings_differ"]


def test_unknown_protocol_is_one_line(toy_zoo, tmp_path, capsys):
    assert bench(toy_zoo, tmp_path / "a", "--protocol", "fastest") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("segbench: error: --protocol: unknown protocol 'fastest'") and "\n" not in err


def test_protocols_command_lists_every_protocol_and_its_script(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one line per protocol
    assert main(["protocols"]) == 0
    out = capsys.readouterr().out
    for protocol in PROTOCOLS.values():
        assert f"│ {protocol.name} " in out
    assert "back to back" in out and "synchronized each" in out and "STDC-Seg" in out


def test_a_protocol_run_keeps_the_default_record_beside_it(toy_zoo, tmp_path):
    from segbench.records import iter_records

    out = tmp_path / "out"
    assert bench(toy_zoo, out, "--images", "6", "--warmup", "1") == 0
    assert bench(toy_zoo, out, "--protocol", "stdc", "--images", "6", "--warmup", "1") == 0
    found = {path.parent.name: record for path, record in iter_records(out / "results")}  # each passes the placement check
    hardware = next(iter(found.values()))["environment"]["hardware"]
    assert sorted(found) == [hardware, f"{hardware}+stdc"]
    assert protocol_name(found[hardware]["settings"]) == "mmseg" and protocol_name(found[f"{hardware}+stdc"]["settings"]) == "stdc"
    rows, unpaired = compare_result_sets(out, out)
    assert len(rows) == 2 and not unpaired and all(not row["settings_differ"] for row in rows)  # each with its own protocol


def test_an_onnx_runtime_protocol_end_to_end(toy_zoo, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    assert bench(toy_zoo, tmp_path / "a", "--protocol", "paddleseg", "--images", "3", "--warmup", "1") == 0
    record = only_record(tmp_path / "a")
    assert record["settings"]["backend"] == "onnxruntime" and record["backend"]["providers"] == ["CPUExecutionProvider"]
    assert record["backend"]["parity_error"] <= record["backend"]["parity_tolerance"]
    assert set(record["latency"]["stages"]) - {"clock"} == set(STAGES) and record["latency"]["timed"] == ["forward", "resize", "argmax", "copy_out"]
    assert record["memory"]["measured"] is False and "ONNX Runtime" in record["memory"]["reason"]
    assert bench(toy_zoo, tmp_path / "b", "--backend", "onnxruntime", "--dtype", "fp16") == 1
    assert "the ONNX Runtime backend runs the exported fp32 graph" in capsys.readouterr().err


def test_a_folding_protocol_on_a_zoo_model_folds_its_batchnorms_and_counts_as_built(tmp_path):
    zoo = Path(__file__).resolve().parent.parent / "zoo"
    model = "fast_scnn_8xb4-160k_cityscapes-512x1024"
    common = ["bench", "--zoo", str(zoo), "--models", model, "--device", "cpu", "--input-size", "64x128", "--images", "2",
              "--warmup", "1", "--no-report", "--measure", "params,macs,latency"]  # fmt: skip
    assert main([*common, "--output", str(tmp_path / "a")]) == 0
    assert main([*common, "--output", str(tmp_path / "b"), "--protocol", "hardnet"]) == 0
    (default,), (folded,) = (list((tmp_path / side / "results").glob(f"*/{model}.json")) for side in "ab")
    default, folded = json.loads(default.read_text()), json.loads(folded.read_text())
    assert folded["bn_folding"]["folded"] > 30 and folded["bn_folding"]["max_abs_diff"] <= folded["bn_folding"]["allowed_abs_diff"]
    assert folded["params"] == default["params"] and folded["macs"]["per_image"] == default["macs"]["per_image"]  # as built


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.gpu
def test_cuda_back_to_back_loop_samples_are_event_spans_that_add_up_to_the_loop():
    """On a GPU an unsynchronized loop cannot be split by the wall clock: each sample is the span by CUDA events, and
    the loop's wall-clock mean (what the scripts print) is within the launch overhead of their mean."""
    model = tiny_segmentor(4).cuda().eval()
    stages = prediction_stages(model, InferenceSettings(test_size=(256, 512)), protocol=PROTOCOLS["ddrnet"], device=torch.device("cuda"))
    result = time_predictions(stages, [image(256, 512)], torch.device("cuda"), iterations=50, sync_each=False)
    assert result["stages"]["clock"] == "cuda_event" and len(result["samples"]) == 50 and "cuda_event_samples" not in result
    assert all(s > 0 for s in result["samples"])
    assert statistics.mean(result["samples"]) <= 1.5 * result["loop"]["mean_s"] + 1e-4


@cuda
@pytest.mark.gpu
def test_cuda_folding_keeps_the_logits_of_a_zoo_model():
    from segbench.build import build_model
    from segbench.fold import TOLERANCE, fold_batchnorm
    from segbench.manifest import load_zoo
    from toy_models import randomize_batchnorms

    (spec,) = [s for s in load_zoo(Path(__file__).resolve().parent.parent / "zoo") if s.name.startswith("ddrnet_23-slim")]
    model = randomize_batchnorms(build_model(spec)).cuda().eval()
    x = torch.randn(1, 3, 128, 256, device="cuda")
    with torch.no_grad():
        reference = model(x)
    report = fold_batchnorm(model, x)
    with torch.no_grad():
        folded = model(x)
    assert report["folded"] > 0 and (folded - reference).abs().max() <= TOLERANCE * reference.abs().max()
