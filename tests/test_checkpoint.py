"""Checkpoint loading: containers, hash checks, the download cache, error messages, key adapters."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from segbench.checkpoint import default_cache_dir, expected_sha256, load_checkpoint, torch_load_is_safe
from segbench.cli import main
from segbench.errors import SegbenchError
from segbench.models import architecture_builder
from toy_models import tiny_segmentor

DATA = Path(__file__).parent / "data"


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def url_key(url: str) -> str:
    """The cache folder of a URL, as the README describes it: the first 16 hex digits of its sha256."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def save_with_hash_name(checkpoint: object, directory: Path, stem: str) -> Path:
    """Save as mmsegmentation names its files: the first 8 hex digits of the sha256 before '.pth'."""
    plain = directory / f"{stem}.pth"
    torch.save(checkpoint, plain)
    return plain.rename(directory / f"{stem}-{sha256_of(plain)[:8]}.pth")


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_mmsegmentation_style_file_round_trip(tmp_path):
    source = architecture_builder("fcn_resnet")(depth=18)
    for module in source.modules():  # non-default BN statistics, so buffers are really carried over
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_()
            module.num_batches_tracked.fill_(80000)
    meta = {"CLASSES": ("road", "sidewalk"), "mmcv_version": "1.3.0", "iter": 80000}
    checkpoint = {"meta": meta, "state_dict": source.state_dict()}
    path = save_with_hash_name(checkpoint, tmp_path, "fcn_r18-d8_20201225_021451")
    target = architecture_builder("fcn_resnet")(depth=18)
    load_checkpoint(target, path, model_name="fcn_r18-d8")
    assert_same_weights(source, target)


def test_torchvision_reference_container_and_full_sha256(tmp_path):
    source = tiny_model()
    path = tmp_path / "trained.pth"
    torch.save({"model": source.state_dict(), "epoch": 3}, path)
    target = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    load_checkpoint(target, path, model_name="tiny", sha256=sha256_of(path).upper())
    assert_same_weights(source, target)


@pytest.mark.parametrize("wrong", ["name", "sha256"])
def test_wrong_hash_of_local_file(tmp_path, wrong):
    path = save_with_hash_name(tiny_model().state_dict(), tmp_path, "tiny")
    if wrong == "name":
        path = path.rename(tmp_path / "tiny-00000000.pth")
    sha256 = "0" * 64 if wrong == "sha256" else None
    with pytest.raises(SegbenchError, match=r"field 'sha256'.*does not match") as error:
        load_checkpoint(tiny_model(), path, model_name="tiny", sha256=sha256)
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    assert path.exists()  # a user's own file is never deleted


def test_expected_sha256_prefers_the_full_hash():
    assert expected_sha256("fcn_r50-d8_512x1024_80k_cityscapes_20200606_113019-03aa804d.pth", None) == "03aa804d"
    assert expected_sha256("fcn_r50-d8_512x1024_80k_cityscapes.pth", None) is None
    assert expected_sha256("x-03aa804d.pth", "AB" * 32) == "ab" * 32


def test_mismatch_names_model_file_and_first_keys(tmp_path):
    state_dict = tiny_model().state_dict()
    for i in range(7):
        state_dict[f"extra.{i}.weight"] = torch.zeros(1)
    del state_dict["1.running_var"]
    state_dict["0.weight"] = torch.zeros(4, 3, 5, 5)
    path = tmp_path / "tiny.pth"
    torch.save(state_dict, path)
    with pytest.raises(SegbenchError) as error:
        load_checkpoint(tiny_model(), path, model_name="tiny-model")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: model 'tiny-model': field 'state_dict'")
    assert "1 missing (1.running_var)" in message
    assert "7 unexpected (extra.0.weight, extra.1.weight, extra.2.weight, extra.3.weight, extra.4.weight, ...)" in (
        message
    )
    assert "1 mis-shaped (0.weight (4, 3, 5, 5) vs (4, 3, 3, 3))" in message


def test_unreadable_or_missing_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(SegbenchError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(tiny_model(), garbage, model_name="tiny")
    with pytest.raises(SegbenchError, match="no such checkpoint file"):
        load_checkpoint(tiny_model(), tmp_path / "absent.pth", model_name="tiny")
    with pytest.raises(SegbenchError, match="unknown key adapter 'nope'"):
        load_checkpoint(tiny_model(), garbage, model_name="tiny", adapter="nope")


def test_http_download_is_cached_once(tmp_path, server):
    root, base_url, requests = server
    source = tiny_model()
    path = save_with_hash_name({"meta": {}, "state_dict": source.state_dict()}, root, "tiny_20200101_000000")
    cache = tmp_path / "cache"
    for _ in range(2):
        target = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        load_checkpoint(target, f"{base_url}/{path.name}", model_name="tiny", cache_dir=cache)
        assert_same_weights(source, target)
    assert len(requests) == 1
    assert [p.relative_to(cache) for p in cache.rglob("*") if p.is_file()] == [
        Path(url_key(f"{base_url}/{path.name}"), path.name)
    ]


def test_file_url_and_cache_dir_from_environment(tmp_path, monkeypatch):
    path = save_with_hash_name(tiny_model().state_dict(), tmp_path, "tiny")
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    load_checkpoint(tiny_model(), path.as_uri(), model_name="tiny")
    assert (tmp_path / "env-cache" / url_key(path.as_uri()) / path.name).is_file()


@pytest.mark.parametrize("fault", ["corrupted", "wrong_sha256", "truncated_unhashed", "http_404"])
def test_failed_download_leaves_no_file_in_cache(tmp_path, server, fault):
    root, base_url, _ = server
    path = save_with_hash_name(tiny_model().state_dict(), root, "tiny")
    sha256 = None
    if fault == "corrupted":  # same name (so the same expected hash prefix), different bytes
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif fault == "wrong_sha256":
        sha256 = "f" * 64
    elif fault == "truncated_unhashed":
        path = path.rename(root / "tiny.pth")
        path.write_bytes(path.read_bytes()[:100])
    url = f"{base_url}/{'absent.pth' if fault == 'http_404' else path.name}"
    cache = tmp_path / "cache"
    with pytest.raises(SegbenchError) as error:
        load_checkpoint(tiny_model(), url, model_name="tiny", sha256=sha256, cache_dir=cache)
    assert "\n" not in str(error.value) and url in str(error.value)
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def torchvision_state_dict() -> dict[str, torch.Tensor]:
    """Random tensors in torchvision deeplabv3_resnet50's key layout (listed in tests/data)."""
    state_dict = {}
    generator = torch.Generator().manual_seed(0)
    for line in (DATA / "torchvision_deeplabv3_resnet50.keys.txt").read_text().splitlines():
        key, dims = re.fullmatch(r"(\S+) \((.*)\)", line).groups()
        shape = tuple(int(d) for d in dims.split(",") if d.strip())
        if key.endswith("num_batches_tracked"):
            state_dict[key] = torch.tensor(7)
        else:
            state_dict[key] = torch.rand(shape, generator=generator) + 0.5
    return state_dict


def test_torchvision_deeplabv3_adapter_loads_strictly(tmp_path):
    state_dict = torchvision_state_dict()
    path = tmp_path / "deeplabv3_resnet50_coco.pth"
    torch.save(state_dict, path)
    model = architecture_builder("deeplabv3_torchvision")(depth=50)
    load_checkpoint(model, path, model_name="deeplabv3_resnet50", adapter="torchvision_deeplabv3")
    loaded = model.state_dict()
    for theirs, ours in [
        ("backbone.layer4.2.conv3.weight", "backbone.layer4.2.conv3.weight"),
        ("classifier.0.convs.3.0.weight", "decode_head.aspp_modules.3.conv.weight"),
        ("classifier.0.convs.4.1.weight", "decode_head.image_pool.1.conv.weight"),
        ("classifier.0.project.1.running_var", "decode_head.project.bn.running_var"),
        ("classifier.2.bias", "decode_head.bottleneck.bn.bias"),
        ("classifier.4.weight", "decode_head.conv_seg.weight"),
        ("aux_classifier.4.bias", "auxiliary_head.conv_seg.bias"),
    ]:
        assert torch.equal(loaded[ours], state_dict[theirs]), ours
    with pytest.raises(SegbenchError, match="52 missing .*; 52 unexpected"):  # without the adapter no head key fits
        load_checkpoint(model, path, model_name="deeplabv3_resnet50")


def test_same_file_name_behind_two_urls_is_cached_apart(tmp_path, server):
    """PaddleSeg publishes every model as .../<config>/model.pdparams: one name, many files."""
    root, base_url, requests = server
    sources = {}
    for config, seed in (("config_a", 1), ("config_b", 2)):
        (root / config).mkdir()
        torch.manual_seed(seed)
        sources[config] = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        torch.save(sources[config].state_dict(), root / config / "model.pth")
    cache = tmp_path / "cache"
    for _ in range(2):
        for config, source in sources.items():
            url = f"{base_url}/{config}/model.pth"
            target = tiny_model()
            load_checkpoint(target, url, model_name=config, cache_dir=cache)
            assert_same_weights(source, target)
    assert sorted(requests) == ["/config_a/model.pth", "/config_b/model.pth"]  # each fetched once
    for config in sources:  # <cache>/<sha256(url)[:16]>/<file name>
        cached = cache / url_key(f"{base_url}/{config}/model.pth") / "model.pth"
        assert cached.read_bytes() == (root / config / "model.pth").read_bytes()


@pytest.mark.parametrize("damage", ["flipped_byte_under_hash_name", "truncated_without_hash"])
def test_corrupt_cached_file_is_moved_aside_and_fetched_again(tmp_path, server, damage):
    root, base_url, requests = server
    source = tiny_model()
    if damage == "flipped_byte_under_hash_name":
        path = save_with_hash_name(source.state_dict(), root, "tiny")
    else:
        path = root / "tiny.pth"
        torch.save(source.state_dict(), path)
    url, cache = f"{base_url}/{path.name}", tmp_path / "cache"
    load_checkpoint(tiny_model(), url, model_name="tiny", cache_dir=cache)
    (cached,) = cache.rglob(path.name)
    data = bytearray(cached.read_bytes())
    if damage == "flipped_byte_under_hash_name":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[100:]
    cached.write_bytes(bytes(data))

    target = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    load_checkpoint(target, url, model_name="tiny", cache_dir=cache)
    assert_same_weights(source, target)
    assert len(requests) == 2
    assert cached.read_bytes() == path.read_bytes()
    (aside,) = cached.parent.glob(f"{path.name}.corrupt-*")
    assert aside.read_bytes() == bytes(data)  # kept for inspection, never read again


class StallingHandler(http.server.BaseHTTPRequestHandler):
    """Serves `payload`; under /stall/ only its first half, then hangs until `release` is set (bounded)."""

    payload = b""
    release = threading.Event()

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        if self.path.startswith("/stall/"):
            self.wfile.write(self.payload[: len(self.payload) // 2])
            self.wfile.flush()
            self.release.wait(60)
        else:
            self.wfile.write(self.payload)

    def log_message(self, format, *args):
        pass


def test_part_file_of_a_killed_download_is_removed_only_once_its_owner_is_dead(tmp_path):
    source = tiny_model()
    buffer = tmp_path / "tiny.pth"
    torch.save(source.state_dict(), buffer)
    handler = type("Handler", (StallingHandler,), {"payload": buffer.read_bytes(), "release": threading.Event()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base_url, cache = f"http://127.0.0.1:{httpd.server_address[1]}", tmp_path / "cache"
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, torch; from segbench.checkpoint import load_checkpoint; "
         "load_checkpoint(torch.nn.Linear(1, 1), sys.argv[1], model_name='tiny', cache_dir=sys.argv[2])",
         f"{base_url}/stall/tiny.pth", str(cache)],
        cwd=Path(__file__).resolve().parent.parent, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (parts := list(cache.rglob("*.part"))) and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.1)
        assert len(parts) == 1, "the child never started its download"
        load_checkpoint(tiny_model(), f"{base_url}/ok/tiny.pth", model_name="tiny", cache_dir=cache)
        assert parts[0].exists()  # its writer is alive: kept
        child.kill()
        child.wait(timeout=30)
        target = tiny_model()
        load_checkpoint(target, f"{base_url}/ok/tiny.pth", model_name="tiny", cache_dir=cache)
        assert_same_weights(source, target)
        assert list(cache.rglob("*.part")) == []  # its writer is dead: removed by the next run
    finally:
        child.kill()
        handler.release.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    ("version", "safe"),
    [("2.9.1+cu121", False), ("2.1.0", False), ("2.5.1", False), ("2.6.0+cu124", False), ("2.10.0a0+git1234", False),
     ("2.10.0.dev20251115", False), ("2.10.0rc2", False), ("2.10.0", True), ("2.10.1+cu128", True),
     ("2.11.0a0+gitabc", True), ("2.13.0+cpu", True), ("3.0", True), ("nonsense", False)],
)  # fmt: skip
def test_torch_version_check_parses_versions_not_text(monkeypatch, version, safe):
    monkeypatch.setattr(torch, "__version__", version)
    assert torch_load_is_safe() is safe


ADVISORY = re.compile(r"GHSA-53q9-r3pm-6pq6.*CVE-2026-24747.*upgrade torch.*sha256.*--trust-checkpoints")


def test_old_torch_refuses_unpinned_local_file_and_url(tmp_path, server, monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.9.1+cu121")
    root, base_url, requests = server
    source = tiny_model()
    path = save_with_hash_name(source.state_dict(), tmp_path, "tiny")  # the name's 8-digit prefix is no pin
    save_with_hash_name(source.state_dict(), root, "tiny")
    for where in (path, f"{base_url}/{path.name}"):
        with pytest.raises(SegbenchError, match=ADVISORY) as error:
            load_checkpoint(tiny_model(), where, model_name="tiny", cache_dir=tmp_path / "cache")
        assert "\n" not in str(error.value) and str(where) in str(error.value)
    assert requests == []  # refused before downloading
    for where in (path, f"{base_url}/{path.name}"):
        for pin in ({"sha256": sha256_of(path)}, {"trusted": True}):
            target = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
            load_checkpoint(target, where, model_name="tiny", cache_dir=tmp_path / "cache", **pin)
            assert_same_weights(source, target)


def test_cli_sha256_and_trust_flags_reach_the_loader(toy_zoo, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch, "__version__", "2.9.1+cu121")
    ckpt = tmp_path / "toy_a.pth"
    torch.save(tiny_segmentor(num_classes=4).state_dict(), ckpt)
    out = tmp_path / "out"
    args = ["bench", "--zoo", str(toy_zoo), "--output", str(out), "--models", "toy_a", "--checkpoint", str(ckpt),
            "--device", "cpu", "--images", "1", "--warmup", "0", "--train-iters", "0", "--no-report", "--force"]  # fmt: skip
    assert main(args) == 1
    (failed,) = (out / "results").glob("*/toy_a.failed.json")
    assert ADVISORY.search(json.loads(failed.read_text())["error"]["message"])
    assert main([*args, "--sha256", sha256_of(ckpt).upper()]) == 0
    assert main([*args, "--trust-checkpoints"]) == 0
    assert main([*args, "--sha256", "0" * 64]) == 1  # a pin is checked, not just present
    capsys.readouterr()
    assert main([*args[:7], *args[9:], "--sha256", sha256_of(ckpt)]) == 1  # without --checkpoint
    assert capsys.readouterr().err.strip().endswith("--sha256: pins the file of --checkpoint; give --checkpoint too")
