"""PaddlePaddle `.pdparams` files: the restricted reader, the `paddleseg` key adapter, hashes, the
cache and the CLI. The files are written here as paddle.save writes them (a pickle of numpy arrays
under Paddle's names, plus its name-mapping entry), so no Paddle is needed."""

from __future__ import annotations

import builtins
import hashlib
import os
import pickle
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import TOY_ZOO
from paddle_reference import paddle_param_counts
from segbench.checkpoint import load_checkpoint, paddleseg
from segbench.cli import main
from segbench.errors import SegbenchError
from segbench.pdparams import NAME_MAPPING
from toy_models import tiny_segmentor


class Small(nn.Module):
    """A conv, a BatchNorm and a Linear: the three layouts the adapter touches or leaves alone."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)


def trained_small() -> Small:
    torch.manual_seed(0)
    model = Small()
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.normal_()
    model.bn.running_var.abs_()
    return model


def paddle_layout(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's weights as paddle.save stores them, written out by hand: BN statistics as
    `_mean`/`_variance`, no `num_batches_tracked`, Linear weights [in, out], numpy arrays, and the
    structured-name -> parameter-name mapping."""
    arrays = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        key = key.replace("running_mean", "_mean").replace("running_var", "_variance")
        arrays[key] = (value.t() if key == "fc.weight" else value).numpy().copy()
    arrays[NAME_MAPPING] = {key: f"param_{i}" for i, key in enumerate(arrays)}
    return arrays


def numpy1_names(data: bytes, protocol: int) -> bytes:
    """The same pickle as numpy 1 writes it: `numpy.core.multiarray` for numpy 2's `numpy._core`.
    Protocol 4 names a module with a length-prefixed string inside a length-prefixed frame; the
    frame is optional, so it is dropped before the name shrinks."""
    if protocol == 2:
        return data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert data[2] == pickle.FRAME[0] and len(data) == 11 + int.from_bytes(data[3:11], "little"), "one frame"
    body = data[:2] + data[11:]
    return body.replace(b"\x8c\x16numpy._core.multiarray", b"\x8c\x15numpy.core.multiarray")


def write_pdparams(path, content, protocol: int = 4, numpy1: bool = False):
    data = pickle.dumps(content, protocol=protocol)
    path.write_bytes(numpy1_names(data, protocol) if numpy1 else data)
    return path


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert [k for k in sa if not torch.equal(sa[k], sb[k]) and not k.endswith("num_batches_tracked")] == []


@pytest.mark.parametrize("numpy1", [False, True], ids=["numpy2-names", "numpy1-names"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_paddle_file_round_trips_through_the_adapter(tmp_path, protocol, numpy1):
    source = trained_small()
    path = write_pdparams(tmp_path / "model.pdparams", paddle_layout(source), protocol, numpy1)
    if numpy1:
        assert b"numpy.core.multiarray" in path.read_bytes() and b"numpy._core" not in path.read_bytes()
    target = Small()
    load_checkpoint(target, path, model_name="small", adapter="paddleseg")
    assert_same_weights(source, target)
    assert target.bn.num_batches_tracked.item() == 0


def test_adapter_renames_statistics_and_transposes_only_2d_weights():
    state = {
        "bn._mean": torch.arange(3.0),
        "bn._variance": torch.ones(3),
        "fc.weight": torch.arange(6.0).reshape(2, 3),  # Paddle: [in=2, out=3]
        "conv.weight": torch.zeros(4, 2, 1, 1),
        "fc.bias": torch.zeros(3),
    }
    adapted = paddleseg(state)
    assert sorted(adapted) == sorted(
        ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked", "fc.weight", "conv.weight", "fc.bias"]
    )
    assert torch.equal(adapted["fc.weight"], torch.tensor([[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]))
    assert adapted["conv.weight"].shape == (4, 2, 1, 1) and torch.equal(adapted["bn.running_mean"], torch.arange(3.0))


class RunsCode:
    """What a crafted file carries: unpickling it would run a shell command."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, 4])
def test_code_running_object_is_refused_without_running(tmp_path, protocol):
    marker = tmp_path / "ran"
    content = paddle_layout(trained_small())
    content["conv.weight"] = RunsCode(marker)
    path = write_pdparams(tmp_path / "model.pdparams", content, protocol)
    with pytest.raises(SegbenchError) as refused:
        load_checkpoint(Small(), path, model_name="small", adapter="paddleseg")
    message = str(refused.value)
    assert "\n" not in message and "model 'small'" in message and str(path) in message
    assert f"{os.system.__module__}.system" in message  # names the refused global
    assert not marker.exists()


def test_object_arrays_are_refused(tmp_path):
    content = paddle_layout(trained_small())
    content["conv.bias"] = np.array([1, "a"], dtype=object)
    path = write_pdparams(tmp_path / "model.pdparams", content)
    with pytest.raises(SegbenchError, match="'conv.bias' is a ndarray, not a numeric array"):
        load_checkpoint(Small(), path, model_name="small", adapter="paddleseg")


def test_wrong_sha256_is_refused_and_right_one_loads(tmp_path):
    source = trained_small()
    path = write_pdparams(tmp_path / "model.pdparams", paddle_layout(source))
    with pytest.raises(SegbenchError, match=r"field 'sha256'.*does not match"):
        load_checkpoint(Small(), path, model_name="small", sha256="0" * 64, adapter="paddleseg")
    target = Small()
    load_checkpoint(target, path, model_name="small", sha256=hashlib.sha256(path.read_bytes()).hexdigest(), adapter="paddleseg")
    assert_same_weights(source, target)


def test_url_is_cached_and_read_without_torch_version_gate(tmp_path, monkeypatch):
    """PaddleSeg names every file model.pdparams: the cache keeps it under the URL's key, and the
    torch < 2.10 gate (about torch's unpickler) does not stop this reader."""
    monkeypatch.setattr(torch, "__version__", "2.9.1+cu121")
    source = trained_small()
    (tmp_path / "served").mkdir()
    served = write_pdparams(tmp_path / "served" / "model.pdparams", paddle_layout(source))
    url, cache = served.as_uri(), tmp_path / "cache"
    target = Small()
    load_checkpoint(target, url, model_name="small", adapter="paddleseg", cache_dir=cache)
    assert_same_weights(source, target)
    (cached,) = cache.glob("*/model.pdparams")
    assert cached.read_bytes() == served.read_bytes()
    served.unlink()  # the second load reads the cache
    again = Small()
    load_checkpoint(again, url, model_name="small", adapter="paddleseg", cache_dir=cache)
    assert_same_weights(source, again)


def test_cli_checkpoint_reads_pdparams_through_the_manifest_adapter(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.9.1+cu121")  # no --sha256 nor --trust-checkpoints needed
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "toy.yaml").write_text(TOY_ZOO.replace("  Build:\n", "  Weights Adapter: paddleseg\n  Build:\n", 1))
    content = {key: value.numpy() for key, value in tiny_segmentor(num_classes=4).state_dict().items()}
    good = write_pdparams(tmp_path / "good.pdparams", content)
    bad = write_pdparams(tmp_path / "bad.pdparams", {**content, "stem.bias": RunsCode(tmp_path / "ran")})
    args = ["bench", "--zoo", str(zoo), "--output", str(tmp_path / "out"), "--models", "toy_a", "--device", "cpu",
            "--images", "1", "--warmup", "0", "--train-iters", "0", "--no-report", "--force"]  # fmt: skip
    assert main([*args, "--checkpoint", str(good)]) == 0
    assert main([*args, "--checkpoint", str(bad)]) == 1
    assert not (tmp_path / "ran").exists()


# Pieces a crafted or damaged file is made of: opcodes that name globals (allowed and not),
# build and call them, and plain junk.
_FRAGMENTS = [
    b"\x80\x02", b"\x80\x04", b"cos\nsystem\n", b"cbuiltins\neval\n", b"cnumpy\ndtype\n",
    b"cnumpy._core.multiarray\n_reconstruct\n", b"c_codecs\nencode\n", b"(", b"t", b"R", b"}", b"]", b".",
    b"X\x04\x00\x00\x00echo", b"U\x02f4", b"\x8c\x05posix\x8c\x06system\x93", b"N", b"\x85", b"b", b"s",
]  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(_FRAGMENTS) | st.binary(max_size=6), max_size=12).map(b"".join))
def test_junk_never_runs_code_and_fails_in_one_line(tmp_path, monkeypatch, junk):
    ran = []
    for module, name in [(os, "system"), (sys.modules[os.name], "system"), (builtins, "eval")]:
        monkeypatch.setattr(module, name, lambda *args: ran.append(args))
    path = tmp_path / "junk.pdparams"
    path.write_bytes(junk)
    with pytest.raises(SegbenchError) as error:
        load_checkpoint(Small(), path, model_name="small", adapter="paddleseg")
    assert "\n" not in str(error.value) and str(error.value).startswith(str(path))
    assert ran == []


def test_paddle_counts_statistics_and_shared_layers_once():
    """PaddleSeg's params_total counts BN statistics, a shared layer once, and no plain buffer."""
    model = Small()
    model.again = model.conv  # one layer under two names, as ANN's APNB shares f_key as f_query
    model.register_buffer("mu", torch.zeros(7))  # as EMANet's bases: no parameter in Paddle
    model.training_only = ("fc",)
    conv, bn, fc = 3 * 4 * 9 + 4, 4 * 4, 4 * 5 + 5
    assert paddle_param_counts(model) == (conv + bn + fc, conv + bn)
