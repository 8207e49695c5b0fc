"""Backends: eager and compile hand the model on; ONNX Runtime gives eager's logits on a toy and on a zoo model,
and can be timed; an export failure, a missing extra or a CUDA device without a CUDA provider is one line."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from segbench.backends import ONNX_TOLERANCE, _providers, forward_backend, onnx_parity_error
from segbench.build import build_model
from segbench.errors import SegbenchError
from segbench.inference import InferenceSettings
from segbench.manifest import load_zoo
from segbench.timing import prediction_stages, time_predictions
from toy_models import TinySegmentor, randomize_batchnorms

ZOO = Path(__file__).resolve().parent.parent / "zoo"
CPU = torch.device("cpu")


@pytest.fixture
def own_tempdir(tmp_path, monkeypatch):
    """The export's temp file goes to a folder of the test's own, so that what is left there can be checked."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def bn_toy() -> nn.Module:
    """TinySegmentor with a BatchNorm whose statistics are far from 0/1, so a mishandled one shows in the logits."""
    torch.manual_seed(0)
    model = TinySegmentor(num_classes=5)
    model.stem = nn.Sequential(model.stem, nn.BatchNorm2d(8))
    bn = model.stem[1]
    bn.running_mean.normal_(0, 2), bn.running_var.uniform_(0.5, 3), bn.weight.data.uniform_(0.5, 2), bn.bias.data.normal_()
    return model.eval()


def test_eager_is_the_model_and_compile_wraps_it():
    model = bn_toy()
    forward, info = forward_backend(model, "eager", torch.zeros(1, 3, 8, 8), CPU)
    assert forward is model and info == {"backend": "eager"}
    compiled, info = forward_backend(model, "compile", torch.zeros(1, 3, 8, 8), CPU)  # compiles lazily: not called here
    assert info == {"backend": "compile"} and compiled is not model and compiled._orig_mod is model


def test_an_unknown_backend_is_a_one_line_error():
    with pytest.raises(SegbenchError, match=r"--backend: unknown backend 'tensorflow'; known: eager, compile, onnxruntime"):
        forward_backend(bn_toy(), "tensorflow", torch.zeros(1, 3, 8, 8), CPU)


def test_onnxruntime_gives_eager_logits_on_a_toy(own_tempdir):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = bn_toy()
    image = torch.randn(1, 3, 32, 48)
    forward, info = forward_backend(model, "onnxruntime", image, CPU, name="toy")
    with torch.no_grad():
        eager = model(image)
    exported = forward(image)
    assert exported.shape == eager.shape == (1, 5, 16, 24) and exported.device == CPU
    assert onnx_parity_error(eager, exported) <= ONNX_TOLERANCE
    # the check can fail: a model without the BatchNorm is far outside the tolerance
    with torch.no_grad():
        unnormalized = model.classifier(model.relu(model.stem[0](image)))
    assert onnx_parity_error(unnormalized, exported) > 100 * ONNX_TOLERANCE
    assert info["backend"] == "onnxruntime" and info["exporter"] == "torch.onnx dynamo"
    assert info["providers"] == ["CPUExecutionProvider"] and info["onnxruntime"] == onnxruntime.__version__
    assert isinstance(info["opset"], int) and info["opset"] >= 17 and info["export_seconds"] > 0
    assert info["threads"] == torch.get_num_threads() and info["input_shape"] == [1, 3, 32, 48]
    assert info["parity_error"] == pytest.approx(onnx_parity_error(eager, exported)) and info["parity_tolerance"] == ONNX_TOLERANCE
    assert list(own_tempdir.iterdir()) == []  # the exported file is gone once the session holds the model


def test_parity_error_is_scaled_by_the_logits_but_never_below_one():
    eager = torch.tensor([0.0, 10.0, -20.0])
    assert onnx_parity_error(eager, eager + torch.tensor([0.0, 0.0, 0.002])) == pytest.approx(0.002 / 20, rel=1e-3)
    assert onnx_parity_error(eager / 100, eager / 100 + 0.002) == pytest.approx(0.002, rel=1e-3)  # max |eager| = 0.2 < 1


@pytest.mark.usefixtures("one_thread")
def test_onnxruntime_gives_eager_logits_on_a_zoo_model_and_can_be_timed(own_tempdir):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    (spec,) = [s for s in load_zoo(ZOO) if s.name == "fast_scnn_8xb4-160k_cityscapes-512x1024"]
    torch.manual_seed(0)
    model = randomize_batchnorms(build_model(spec)).eval()
    image = torch.randn(1, 3, 64, 128)
    forward, info = forward_backend(model, "onnxruntime", image, CPU, name=spec.name)
    with torch.no_grad():
        eager = model(image)
    assert onnx_parity_error(eager, forward(image)) <= ONNX_TOLERANCE
    test = InferenceSettings(mode="whole", test_size=(64, 128), align_corners=False)
    stages = prediction_stages(forward, test)
    uint8 = [torch.randint(0, 256, (1, 3, 64, 128), dtype=torch.uint8)]
    latency = time_predictions(stages, uint8, CPU, iterations=3)
    assert len(latency["samples"]) == 3 and all(0 < s < 10 for s in latency["samples"])
    assert all(s > 0 for s in latency["stages"]["forward"])


class Eigenvalues(nn.Module):
    """Adds the eigenvalues' sum of a 4x4 block: aten::linalg_eig has no ONNX translation in either exporter."""

    def forward(self, x):
        return x + torch.linalg.eigvals(x[0, 0, :4, :4]).real.sum()


def test_an_export_failure_is_one_line_naming_the_model_and_the_operator(own_tempdir):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    with pytest.raises(SegbenchError) as error:
        forward_backend(Eigenvalues(), "onnxruntime", torch.randn(1, 3, 8, 8), CPU, name="eig_net")
    message = str(error.value)
    assert "\n" not in message and len(message) < 500, message
    assert message.startswith("model 'eig_net': --backend onnxruntime: ONNX export failed"), message
    assert "torch.onnx dynamo:" in message and "torch.onnx torchscript:" in message, message
    assert "linalg_eig" in message and "\x1b" not in message, message
    assert list(own_tempdir.iterdir()) == []


def test_without_the_extra_onnxruntime_is_a_one_line_error_naming_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(SegbenchError, match=r"--backend onnxruntime: onnxruntime is not installed: pip install 'segbench\[onnx\]'"):
        forward_backend(bn_toy(), "onnxruntime", torch.zeros(1, 3, 8, 8), CPU)


def test_segbench_imports_without_onnx():
    blocked = "import sys; sys.modules.update(onnx=None, onnxruntime=None, onnxscript=None); "
    run = subprocess.run(
        [sys.executable, "-c", blocked + "import segbench.backends, segbench.cli; print('ok')"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_execution_providers_best_first():
    assert _providers(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], CPU) == ["CPUExecutionProvider"]
    with pytest.raises(SegbenchError, match=r"offers no CUDA provider \(AzureExecutionProvider, CPUExecutionProvider\): pip install onnxruntime-gpu"):
        _providers(["AzureExecutionProvider", "CPUExecutionProvider"], torch.device("cuda", 0))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_providers_run_on_torchs_stream():
    device = torch.device("cuda", 0)
    providers = _providers(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], device)
    stream = str(torch.cuda.current_stream(device).cuda_stream)
    assert [p[0] for p in providers[:2]] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"] and providers[2] == "CPUExecutionProvider"
    assert all(p[1] == {"device_id": "0", "user_compute_stream": stream} for p in providers[:2])


class ExportDiffers(nn.Module):
    """Doubles its input only while being exported: the ONNX graph computes something else than eager."""

    def forward(self, x):
        return x * 2 if torch.onnx.is_in_onnx_export() else x


def test_an_export_that_computes_something_else_is_refused(own_tempdir):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    with pytest.raises(SegbenchError) as error:
        forward_backend(ExportDiffers(), "onnxruntime", torch.full((1, 3, 4, 4), 3.0), CPU, name="liar")
    # max |6 - 3| = 3 over max(1, 3) = 1
    assert str(error.value) == (
        "model 'liar': --backend onnxruntime: ONNX Runtime's logits differ from eager's by 1 (max |onnx - eager| "
        "over max(1, max |eager|)), more than the tolerance 0.0001: the exported graph computes something else; time it with --backend eager"
    )


class DataDependent(nn.Module):
    """Branches on a value: torch.export refuses it, the TorchScript tracer records the branch taken."""

    def forward(self, x):
        return x * 2 if x.sum().item() > 0 else x


def test_the_torchscript_exporter_takes_over_where_torch_export_fails(own_tempdir):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    image = torch.ones(1, 3, 4, 4)
    forward, info = forward_backend(DataDependent(), "onnxruntime", image, CPU, name="branchy")
    assert info["exporter"] == "torch.onnx torchscript" and info["parity_error"] == 0
    assert torch.equal(forward(image), image * 2)
