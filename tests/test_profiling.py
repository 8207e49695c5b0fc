"""Latency stages, precision and memory-format settings, dataset inputs, GPU state, training step."""

import json
import os
from pathlib import Path

import pytest
import torch

from segbench.cli import main
from segbench.gpu_state import gpu_state_section
from segbench.inference import InferenceSettings
from segbench.models import architecture_builder
from segbench.models.segmentor import EncoderDecoder
from segbench.timing import peak_memory, prediction_stages, time_predictions
from segbench.training import WARMUP_STEPS, measure_training, training_loss, training_outputs
from toy_models import tiny_segmentor

FAST = ["--device", "cpu", "--images", "3", "--warmup", "1", "--no-report"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def only_record(out: Path, model: str) -> dict:
    (path,) = (out / "results").glob(f"*/{model}.json")
    return json.loads(path.read_text())


def test_stages_split_the_prediction_and_the_sample_is_forward_resize_and_argmax():
    stages = prediction_stages(tiny_segmentor(4).eval(), InferenceSettings(test_size=(32, 64)))
    image = torch.randint(0, 256, (1, 3, 32, 64), dtype=torch.uint8)
    assert stages(image).shape == (1, 32, 64)
    timing = time_predictions(stages, [image], torch.device("cpu"), iterations=4)
    split = timing["stages"]
    assert split["clock"] == "perf_counter" and "cuda_event_samples" not in timing
    assert list(split)[1:] == ["copy_in", "preprocess", "forward", "resize", "argmax"] and timing["timed"] == ["forward", "resize", "argmax"]
    for i, sample in enumerate(timing["samples"]):
        assert sample == pytest.approx(split["forward"][i] + split["resize"][i] + split["argmax"][i], rel=1e-3, abs=1e-5)
        assert split["preprocess"][i] > 0


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_autocast_and_channels_last_give_the_fp32_prediction_on_a_toy(dtype):
    model = tiny_segmentor(4).eval()
    image = torch.randint(0, 256, (1, 3, 32, 64), dtype=torch.uint8)
    reference = prediction_stages(model, InferenceSettings(test_size=(32, 64)))
    low = prediction_stages(model, InferenceSettings(test_size=(32, 64)), dtype=dtype, channels_last=True)
    with torch.inference_mode():
        assert low.run(image, ["preprocess", "forward"]).dtype == getattr(torch, {"bf16": "bfloat16", "fp16": "float16"}[dtype])
        agree = (low(image) == reference(image)).float().mean()
    assert agree > 0.9  # low precision may flip a few near-ties


def test_settings_flags_are_recorded(toy_zoo, tmp_path):
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), "--models", "toy_a", "--dtype", "bf16", "--channels-last", *FAST]) == 0
    record = only_record(out, "toy_a")
    settings = record["settings"]
    assert settings["dtype"] == "bfloat16" and settings["autocast"] and settings["channels_last"] and not settings["compile"]
    assert settings["input"] == "synthetic" and record["latency"]["distinct_images"] == 1
    assert settings["cudnn_benchmark"] is False and "allow_tf32_matmul" in settings
    assert record["training"] == {"measured": False, "reason": "training memory and step time not measured: CUDA only, this run is on cpu"}
    assert record["gpu_state"]["measured"] is False
    assert len(record["latency"]["stages"]["forward"]) == 3


def test_compile_happens_in_the_warm_up_and_is_recorded(toy_zoo, tmp_path):
    """torch.compile end to end on the CPU (inductor, ~15-35 s): the compiling call is a warm-up, never a sample."""
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), "--models", "toy_a", "--compile", *FAST]) == 0
    record = only_record(out, "toy_a")
    assert record["status"] == "ok" and record["settings"]["compile"] is True
    samples = record["latency"]["samples"]
    assert len(samples) == 3 and max(samples) < 0.05 * record["duration_s"]  # compiling took the rest


def test_dataset_images_are_timed_when_a_data_root_is_given(toy_zoo, synthetic_cityscapes, tmp_path):
    out = tmp_path / "out"
    args = ["bench", "--zoo", str(toy_zoo), "--output", str(out), "--models", "toy_a", "--data-root", str(synthetic_cityscapes), "--workers", "0"]
    assert main([*args, *FAST[:2], "--images", "7", "--warmup", "1", "--no-report"]) == 0
    record = only_record(out, "toy_a")
    assert record["settings"]["input"] == "dataset"
    assert record["latency"]["distinct_images"] == 5  # the split has 5 images; 7 timed runs cycle through them
    assert len(record["latency"]["samples"]) == 7


def test_gpu_state_section_energy_and_warnings():
    reading = {"sm_clock_mhz": 1980, "memory_clock_mhz": 2619, "max_sm_clock_mhz": 1980, "temperature_c": 40,
               "power_w": 300.0, "energy_j": 1000.0, "throttle_reasons": 0}  # fmt: skip
    hot = dict(reading, sm_clock_mhz=1500, energy_j=1100.0, throttle_reasons=0x20 | 0x40)
    section = gpu_state_section(reading, hot, images=200)
    assert section["energy_per_image_j"] == pytest.approx(0.5)
    assert section["warnings"] == [
        "SM clock dropped from 1980 to 1500 MHz during timing",
        "clocks throttled at the end of timing (NVML reasons 0x60)",
    ]
    assert gpu_state_section(reading, dict(reading, throttle_reasons=0x1), images=1)["warnings"] == []
    assert gpu_state_section(None, None, images=1)["measured"] is False


def small_fcn():
    return architecture_builder("fcn_resnet")(depth=18, num_classes=5).eval()


class Pick(torch.nn.Conv2d):
    """A 1x1 conv on one level of a feature list, as heads pick features by in_index."""

    def __init__(self, channels, classes, index):
        super().__init__(channels, classes, 1)
        self.index = index

    def forward(self, features):
        return super().forward(features[self.index])


class TwoLevels(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.down = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 8, 3, stride=2, padding=1)

    def forward(self, x):
        low = self.stem(x).relu()
        return [low, self.down(low).relu()]


def tiny_encoder_decoder():
    return EncoderDecoder(TwoLevels(), Pick(8, 5, 1), Pick(4, 5, 0)).eval()


def test_training_outputs_include_the_auxiliary_head_with_weight_0_4():
    model = tiny_encoder_decoder()
    outputs = training_outputs(model, torch.randn(1, 3, 32, 32))
    assert [w for _, w in outputs] == [1.0, 0.4]
    labels = torch.full((1, 32, 32), 255, dtype=torch.long)
    labels[0, :4] = 1
    loss = training_loss(model.train(), torch.randn(1, 3, 32, 32), labels)
    loss.backward()
    assert model.auxiliary_head.weight.grad.abs().sum() > 0


def test_training_step_runs_on_a_copy():
    model = tiny_encoder_decoder()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    result = measure_training(model, torch.device("cpu"), (32, 32), batch=2, iterations=2)
    assert result["measured"] and len(result["step"]["samples"]) == 2 and "memory" not in result
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == flags  # benchmark=True inside only


def test_mixed_precision_training_step_runs_the_heads_in_fp16():
    """The '-amp-' entries: forward under fp16 autocast, loss scaled by a GradScaler, weights stay fp32."""
    model = tiny_encoder_decoder()
    seen = []
    for head in (model.decode_head, model.auxiliary_head):
        head.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    result = measure_training(model, torch.device("cpu"), (32, 32), batch=2, iterations=1, precision="fp16")
    assert result["measured"] and len(result["step"]["samples"]) == 1
    # hooks travel with the deep copy that trains: its fp32 probe for the class count, then every step's two heads
    assert seen == [torch.float32] * 2 + [torch.float16] * 2 * (WARMUP_STEPS + 1)
    assert all(p.dtype == torch.float32 for p in model.parameters())


@cuda
@pytest.mark.gpu
def test_cuda_records_events_memory_training_and_gpu_state(toy_zoo, tmp_path):
    out = tmp_path / "out"
    assert main(["bench", "--zoo", str(toy_zoo), "--output", str(out), "--models", "toy_a", "--device", "cuda",
                 "--images", "5", "--warmup", "2", "--train-iters", "2", "--no-report"]) == 0  # fmt: skip
    record = only_record(out, "toy_a")
    latency = record["latency"]
    assert len(latency["cuda_event_samples"]) == 5 and latency["stages"]["clock"] == "cuda_event"
    assert all(e <= w * 1.5 + 1e-3 for e, w in zip(latency["cuda_event_samples"], latency["samples"]))
    assert record["memory"]["measured"] and record["memory"]["peak_reserved_bytes"] >= record["memory"]["peak_allocated_bytes"] > 0
    training = record["training"]
    assert training["measured"] and training["memory"]["peak_allocated_bytes"] > 0
    assert record["settings"]["training"]["batch_size"] == 2 and record["settings"]["training"]["crop_size"] == [32, 64]
    assert record["settings"]["training"]["cudnn_benchmark"] is True and record["settings"]["training"]["precision"] == "fp32"
    assert "gpu_state" in record


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_cuda_autocast_forward_runs_in_low_precision(dtype):
    model = small_fcn().cuda()
    stages = prediction_stages(model, InferenceSettings(test_size=(64, 64)), dtype=dtype, channels_last=True, device=torch.device("cuda"))
    image = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.inference_mode():
        assert stages.run(image, ["copy_in", "preprocess", "forward"]).dtype != torch.float32
    timing = time_predictions(stages, [image], torch.device("cuda"), iterations=3)
    assert len(timing["cuda_event_samples"]) == 3


def nbytes(*tensors):
    return sum(t.numel() * t.element_size() for t in tensors)


@cuda
@pytest.mark.gpu
def test_cuda_memory_holds_at_least_the_tensors_counted_by_hand():
    """Inference: the static figure holds the weights and buffers; the peak adds the image copied in, the resized
    logits and the labels. Training: weights, gradients and SGD momentum (3 × the parameter bytes,
    every parameter of this FCN gets a gradient) and the batch are all alive at the end of backward."""
    model = small_fcn()
    stages = prediction_stages(model.cuda(), InferenceSettings(test_size=(64, 64)), device=torch.device("cuda"))
    image = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    memory = peak_memory(stages, image, torch.device("cuda"))
    static = nbytes(*model.parameters(), *model.buffers())
    assert memory["static_bytes"] >= static
    assert memory["peak_allocated_bytes"] >= memory["static_bytes"] + nbytes(image) + 5 * 64 * 64 * 4 + 64 * 64 * 8
    weights = nbytes(*model.parameters())
    training = measure_training(model.cpu(), torch.device("cuda"), (64, 64), batch=2, iterations=2)
    batch = 2 * 3 * 64 * 64 * 4 + 2 * 64 * 64 * 8  # float images, int64 labels
    assert training["memory"]["peak_allocated_bytes"] >= 3 * weights + batch
    assert training["memory"]["peak_reserved_bytes"] >= training["memory"]["peak_allocated_bytes"]


def fake_pynvml(monkeypatch, **overrides):
    """A stand-in pynvml module that answers as a driver would; `calls` logs init and shutdown."""
    import types

    calls = []
    fake = types.SimpleNamespace(
        calls=calls, NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2, NVML_TEMPERATURE_GPU=0,
        nvmlInit=lambda: calls.append("init"), nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlDeviceGetHandleByUUID=lambda uuid: 1 / 0, nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlDeviceGetClockInfo=lambda h, kind: {1: 1755, 2: 2619}[kind], nvmlDeviceGetMaxClockInfo=lambda h, kind: 1980,
        nvmlDeviceGetTemperature=lambda h, kind: 61, nvmlDeviceGetPowerUsage=lambda h: 312_500,
        nvmlDeviceGetTotalEnergyConsumption=lambda h: 9_000_000, nvmlDeviceGetCurrentClocksEventReasons=lambda h: 1 / 0,
        nvmlDeviceGetName=lambda h: b"NVIDIA H100 80GB HBM3" if h == "gpu0" else 1 / 0,
        nvmlSystemGetDriverVersion=lambda: "580.65.06",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(total=85_520_809_984),
    )  # fmt: skip
    for name, value in overrides.items():
        setattr(fake, name, value)
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: 1 / 0)
    return fake


def test_nvml_readings_through_a_fake_pynvml(monkeypatch):
    """The NVML calls and units without a GPU; the handle falls back to the CUDA index when the UUID fails."""
    from segbench.environment import _nvml_info
    from segbench.gpu_state import read_gpu_state

    fake = fake_pynvml(monkeypatch)
    state = read_gpu_state(torch.device("cuda", 0))
    assert state == {"sm_clock_mhz": 1755, "memory_clock_mhz": 2619, "max_sm_clock_mhz": 1980, "temperature_c": 61,
                     "power_w": 312.5, "energy_j": 9000.0, "throttle_reasons": None,
                     # this fake has no process list, violation counters or UUID: the verdict's evidence is None
                     "processes": None, "own_pids": sorted({os.getpid(), os.getppid()}),
                     "violation_ns": {"power": None, "thermal": None}, "segbench_workers": None}  # fmt: skip
    assert fake.calls == ["init", "shutdown"]
    info = _nvml_info(torch.device("cuda", 0))
    assert info == {"gpu_name": "NVIDIA H100 80GB HBM3", "driver": "580.65.06", "gpu_memory_total_bytes": 85_520_809_984}


def test_nvml_finds_the_gpu_by_uuid_so_cuda_visible_devices_cannot_mislead_it(monkeypatch):
    """CUDA index 0 is physical GPU 3 under CUDA_VISIBLE_DEVICES=3: NVML's index 0 would be another GPU."""
    import types

    from segbench.gpu_state import read_gpu_state

    fake_pynvml(
        monkeypatch,
        nvmlDeviceGetHandleByUUID=lambda uuid: "gpu3" if uuid == "GPU-5c8a2f1e-0000-4000-8000-000000000003" else 1 / 0,
        nvmlDeviceGetClockInfo=lambda h, kind: {"gpu0": 1000, "gpu3": 1755}[h],
    )
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="5c8a2f1e-0000-4000-8000-000000000003"))
    assert read_gpu_state(torch.device("cuda", 0))["sm_clock_mhz"] == 1755


def test_nvml_refusing_the_device_gives_no_readings_and_still_shuts_down(monkeypatch):
    from segbench.environment import _nvml_info
    from segbench.gpu_state import read_gpu_state

    fake = fake_pynvml(monkeypatch, nvmlDeviceGetHandleByIndex=lambda i: 1 / 0)
    assert read_gpu_state(torch.device("cuda", 0)) is None
    assert _nvml_info(torch.device("cuda", 0)) == {}
    assert fake.calls == ["init", "shutdown"] * 2
    assert read_gpu_state(torch.device("cpu")) is None and fake.calls == ["init", "shutdown"] * 2


def test_no_nvml_library_or_driver_gives_no_readings(monkeypatch):
    from segbench.environment import _nvml_info
    from segbench.gpu_state import read_gpu_state

    fake_pynvml(monkeypatch, nvmlInit=lambda: 1 / 0)  # a driver that refuses NVML
    assert read_gpu_state(torch.device("cuda", 0)) is None and _nvml_info(torch.device("cuda", 0)) == {}
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)  # the library is not installed
    assert read_gpu_state(torch.device("cuda", 0)) is None and _nvml_info(torch.device("cuda", 0)) == {}
