"""Checkpoints: local path or http(s) URL -> sha256 check -> torch.load(weights_only=True)
-> key adapter -> load_state_dict(strict=True).

Downloads go to a temporary file in the cache directory and are renamed into place only after
the hash checks out and the file reads as a checkpoint, so the cache never holds a partial or
unverified file. Without a full sha256, the hash prefix that mmsegmentation and torchvision put
in their file names (`..._20200604_192608-efe53f0d.pth`) is checked instead.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, Callable
from urllib.parse import unquote, urlparse

import torch
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from torch import nn

from segbench.errors import SegbenchError, located

StateDict = dict[str, torch.Tensor]
KeyAdapter = Callable[[StateDict], StateDict]

_KEY_ADAPTERS: dict[str, KeyAdapter] = {}
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z]+$")
_URL_SCHEMES = ("http", "https", "file")
_CHUNK = 1 << 20
_KEYS_LISTED = 5


def register_key_adapter(name: str) -> Callable[[KeyAdapter], KeyAdapter]:
    """Decorator naming a function that renames a foreign state_dict into a segbench model's keys."""

    def wrap(adapter: KeyAdapter) -> KeyAdapter:
        if name in _KEY_ADAPTERS:
            raise ValueError(f"key adapter {name!r} registered twice")
        _KEY_ADAPTERS[name] = adapter
        return adapter

    return wrap


def list_key_adapters() -> list[str]:
    return sorted(_KEY_ADAPTERS)


def default_cache_dir() -> Path:
    """$SEGBENCH_CACHE if set, else ~/.cache/segbench/checkpoints."""
    return Path(os.environ.get("SEGBENCH_CACHE") or Path.home() / ".cache" / "segbench" / "checkpoints")


def expected_sha256(name: str, sha256: str | None) -> str | None:
    """The full hash when given, else the hex prefix in the file name, else None (nothing to check)."""
    if sha256:
        return sha256.lower()
    match = _HASH_IN_NAME.search(name)
    return match.group(1) if match else None


def load_checkpoint(
    model: nn.Module,
    source: str | os.PathLike,
    *,
    model_name: str,
    sha256: str | None = None,
    adapter: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> None:
    """Load weights into `model` strictly; every failure a user can cause is a one-line SegbenchError."""
    source = str(source)
    if adapter is not None and adapter not in _KEY_ADAPTERS:
        raise SegbenchError(
            f"{located(source, model_name, 'adapter')}: unknown key adapter {adapter!r}; known: {list_key_adapters()}"
        )
    if urlparse(source).scheme in _URL_SCHEMES:
        state_dict = _cached_download(source, model_name, sha256, Path(cache_dir or default_cache_dir()))
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise SegbenchError(f"{located(source, model_name)}: no such checkpoint file; check the path or give a URL")
        expected = expected_sha256(path.name, sha256)
        if expected is not None:
            _verify(_sha256_of(path), expected, source, model_name)
        state_dict = _read_state_dict(path, source, model_name)
    if adapter is not None:
        state_dict = _KEY_ADAPTERS[adapter](state_dict)
    _check_fits(model, state_dict, source, model_name)
    model.load_state_dict(state_dict, strict=True)


def _cached_download(url: str, model_name: str, sha256: str | None, cache_dir: Path) -> StateDict:
    """The state_dict of `url`, downloading it into `cache_dir` on first use."""
    name = Path(unquote(urlparse(url).path)).name
    if not name:
        raise SegbenchError(f"{located(url, model_name)}: the URL names no file to cache it under")
    expected = expected_sha256(name, sha256)
    target = cache_dir / name
    if target.is_file():
        if expected is not None:
            _verify(_sha256_of(target), expected, str(target), model_name)
        return _read_state_dict(target, str(target), model_name)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=cache_dir, prefix=f".{name}.", suffix=".part")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _download(url, out, name, model_name)
        _verify(digest, expected, url, model_name)
        state_dict = _read_state_dict(temp, url, model_name)
        os.replace(temp, target)
        return state_dict
    finally:
        temp.unlink(missing_ok=True)  # gone already after a successful rename


def _download(url: str, out: BinaryIO, name: str, model_name: str) -> str:
    """Copy `url` into `out` with a progress bar; returns the sha256 hex digest of what was written."""
    digest = hashlib.sha256()
    progress = Progress(
        TextColumn("{task.description}", markup=False),  # a file name from a URL is text, not markup
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    try:
        with urllib.request.urlopen(url, timeout=60) as response, progress:
            size = int(response.headers.get("Content-Length") or 0)
            task = progress.add_task(f"download {name}", total=size or None)
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                progress.advance(task, len(chunk))
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise SegbenchError(
            f"{located(url, model_name)}: download failed ({reason}); check the URL and the network"
        ) from error
    return digest.hexdigest()


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(digest: str, expected: str | None, file: str, model_name: str) -> None:
    if expected is not None and not digest.startswith(expected):
        raise SegbenchError(
            f"{located(file, model_name, 'sha256')}: file hash {digest[: len(expected)]} does not match the expected "
            f"{expected}; the file is corrupt or not the one the manifest names, fetch it again"
        )


def _read_state_dict(path: Path, file: str, model_name: str) -> StateDict:
    """torch.load with weights_only=True, unwrapping mmseg's {'meta', 'state_dict'} and torchvision's {'model'}."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zip, pickle and weights_only refusals all mean "cannot read this file"
        detail = (str(error).strip().splitlines() or [""])[0]
        raise SegbenchError(
            f"{located(file, model_name)}: not a readable PyTorch checkpoint ({type(error).__name__}: {detail})"
        ) from error
    for container in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(container), dict):
            checkpoint = checkpoint[container]
            break
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise SegbenchError(f"{located(file, model_name)}: holds no state_dict (a mapping of names to tensors)")
    return dict(checkpoint)


def _check_fits(model: nn.Module, state_dict: StateDict, file: str, model_name: str) -> None:
    """Raise one line naming the first few missing, unexpected and mis-shaped keys, with their counts."""
    wanted = model.state_dict()
    problems = {
        "missing": [key for key in wanted if key not in state_dict],
        "unexpected": [key for key in state_dict if key not in wanted],
        "mis-shaped": [
            f"{key} {tuple(state_dict[key].shape)} vs {tuple(value.shape)}"
            for key, value in wanted.items()
            if key in state_dict and state_dict[key].shape != value.shape
        ],
    }
    listed = [
        f"{len(keys)} {kind} ({', '.join(keys[:_KEYS_LISTED])}{', ...' if len(keys) > _KEYS_LISTED else ''})"
        for kind, keys in problems.items()
        if keys
    ]
    if listed:
        raise SegbenchError(
            f"{located(file, model_name, 'state_dict')}: checkpoint does not fit the model: {'; '.join(listed)}; "
            "check the architecture, its arguments and the key adapter"
        )


def _rename_prefixes(state_dict: StateDict, renames: dict[str, str]) -> StateDict:
    """Replace the first matching prefix of every key; keys without one pass through unchanged."""
    renamed = {}
    for key, value in state_dict.items():
        old = next((prefix for prefix in renames if key.startswith(prefix)), None)
        renamed[key if old is None else renames[old] + key[len(old) :]] = value
    return renamed


# torchvision's deeplabv3_resnet{50,101} -> segbench's `deeplabv3_torchvision`. The backbones share
# their keys (conv1, bn1, layerN.M.convK/bnK/downsample) and are not renamed.
_TORCHVISION_DEEPLABV3 = {
    "classifier.0.convs.0.0.": "decode_head.aspp_modules.0.conv.",  # 1x1 branch
    "classifier.0.convs.0.1.": "decode_head.aspp_modules.0.bn.",
    "classifier.0.convs.1.0.": "decode_head.aspp_modules.1.conv.",  # atrous branches (rates 12, 24, 36)
    "classifier.0.convs.1.1.": "decode_head.aspp_modules.1.bn.",
    "classifier.0.convs.2.0.": "decode_head.aspp_modules.2.conv.",
    "classifier.0.convs.2.1.": "decode_head.aspp_modules.2.bn.",
    "classifier.0.convs.3.0.": "decode_head.aspp_modules.3.conv.",
    "classifier.0.convs.3.1.": "decode_head.aspp_modules.3.bn.",
    "classifier.0.convs.4.1.": "decode_head.image_pool.1.conv.",  # index 0 is the average pool
    "classifier.0.convs.4.2.": "decode_head.image_pool.1.bn.",
    "classifier.0.project.0.": "decode_head.project.conv.",
    "classifier.0.project.1.": "decode_head.project.bn.",
    "classifier.1.": "decode_head.bottleneck.conv.",
    "classifier.2.": "decode_head.bottleneck.bn.",
    "classifier.4.": "decode_head.conv_seg.",
    "aux_classifier.0.": "auxiliary_head.convs.0.conv.",
    "aux_classifier.1.": "auxiliary_head.convs.0.bn.",
    "aux_classifier.4.": "auxiliary_head.conv_seg.",
}


@register_key_adapter("torchvision_deeplabv3")
def torchvision_deeplabv3(state_dict: StateDict) -> StateDict:
    return _rename_prefixes(state_dict, _TORCHVISION_DEEPLABV3)
