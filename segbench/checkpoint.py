"""Checkpoints: local path or http(s) URL -> sha256 check -> torch.load(weights_only=True), or
segbench.pdparams for PaddlePaddle's `.pdparams` -> key adapter -> load_state_dict(strict=True).

The cache keeps each URL's file as `<cache>/<sha256(url)[:16]>/<file name>`: keyed by the whole
URL, since PaddleSeg names every file `model.pdparams`. Downloads go to a temporary `.part` file
beside it and are renamed into place only after the hash checks out and the file reads as a
checkpoint, so the cache never holds a partial or unverified file; a cached file that no longer
checks out is moved aside and fetched again, and the `.part` of a killed download is removed by
the next run. Without a full sha256, the hash prefix that mmsegmentation and torchvision put in
their file names (`..._20200604_192608-efe53f0d.pth`) is checked instead: a corruption check,
not a pin (2^32 tries forge it).

torch before 2.10 can run code or corrupt memory while unpickling a crafted file even with
weights_only=True, so there a checkpoint is read only when its full sha256 is pinned or the
user says they trust it. That gate does not apply to `.pdparams` files: segbench's own reader
admits only numpy arrays and plain containers, whatever the torch version.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
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
from segbench.pdparams import read_pdparams
from segbench.tempfiles import owned_temp_file, remove_abandoned

StateDict = dict[str, torch.Tensor]
KeyAdapter = Callable[[StateDict], StateDict]

_KEY_ADAPTERS: dict[str, KeyAdapter] = {}
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z]+$")
_FULL_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# GHSA-53q9-r3pm-6pq6 (CVE-2025-32434, code execution) is fixed in 2.6, CVE-2026-24747 (memory
# corruption) in 2.10: both in the unpickler behind torch.load(weights_only=True).
_SAFE_TORCH = (2, 10)
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


def torch_load_is_safe() -> bool:
    """True on a torch whose weights_only unpickler has both fixes: a final release 2.10 or later.

    torch.__version__ is parsed, not compared as text ('2.9.1+cu121' < '2.10'); a pre-release
    of 2.10 (2.10.0a0, 2.10.0rc1, 2.10.0.dev...) may predate the fix and counts as older.
    """
    match = re.match(r"(\d+)\.(\d+)(?:\.\d+)?([^+]*)", torch.__version__)
    if not match:
        return False
    release = (int(match[1]), int(match[2]))
    return release > _SAFE_TORCH or (release == _SAFE_TORCH and not match[3])


def load_checkpoint(
    model: nn.Module,
    source: str | os.PathLike,
    *,
    model_name: str,
    sha256: str | None = None,
    adapter: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    trusted: bool = False,
) -> None:
    """Load weights into `model` strictly; every failure a user can cause is a one-line SegbenchError.

    `trusted` lets an unpinned file be read on a torch older than 2.10 (--trust-checkpoints).
    """
    source = str(source)
    if adapter is not None and adapter not in _KEY_ADAPTERS:
        raise SegbenchError(
            f"{located(source, model_name, 'adapter')}: unknown key adapter {adapter!r}; known: {list_key_adapters()}"
        )
    is_url = urlparse(source).scheme in _URL_SCHEMES
    path = Path(source).expanduser()
    if not is_url and not path.is_file():
        raise SegbenchError(f"{located(source, model_name)}: no such checkpoint file; check the path or give a URL")
    if not (trusted or _is_pdparams(source) or torch_load_is_safe() or (sha256 and _FULL_SHA256.fullmatch(sha256))):
        raise SegbenchError(
            f"{located(source, model_name, 'sha256')}: torch {torch.__version__} is older than 2.10, and its "
            "weights_only unpickler is no safe boundary for a crafted file (GHSA-53q9-r3pm-6pq6 / CVE-2025-32434: "
            "code execution, fixed in 2.6; CVE-2026-24747: memory corruption, fixed in 2.10); upgrade torch, pin "
            "the file's full sha256 (the manifest's 'Weights SHA256', or --sha256 with --checkpoint), or pass "
            "--trust-checkpoints if you trust the file"
        )
    if is_url:
        state_dict = _cached_download(source, model_name, sha256, Path(cache_dir or default_cache_dir()))
    else:
        expected = expected_sha256(path.name, sha256)
        if expected is not None:
            _verify(_sha256_of(path), expected, source, model_name)
        state_dict = _read_state_dict(path, source, model_name)
    if adapter is not None:
        state_dict = _KEY_ADAPTERS[adapter](state_dict)
    _check_fits(model, state_dict, source, model_name)
    model.load_state_dict(state_dict, strict=True)


def _cached_download(url: str, model_name: str, sha256: str | None, cache_dir: Path) -> StateDict:
    """The state_dict of `url`, downloading it into `cache_dir` on first use and again if its copy went bad."""
    name = Path(unquote(urlparse(url).path)).name
    if not name:
        raise SegbenchError(f"{located(url, model_name)}: the URL names no file to cache it under")
    expected = expected_sha256(name, sha256)
    folder = cache_dir / hashlib.sha256(url.encode()).hexdigest()[:16]
    target = folder / name
    remove_abandoned(cache_dir.glob("*/.*.part"))
    if target.is_file():
        try:
            if expected is not None:
                _verify(_sha256_of(target), expected, str(target), model_name)
            return _read_state_dict(target, str(target), model_name)
        except SegbenchError as error:
            _move_aside(target, error)
    folder.mkdir(parents=True, exist_ok=True)
    fd, temp = owned_temp_file(folder, name, ".part")
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _download(url, out, name, model_name)
        _verify(digest, expected, url, model_name)
        state_dict = _read_state_dict(temp, url, model_name)
        os.replace(temp, target)
        return state_dict
    finally:
        temp.unlink(missing_ok=True)  # gone already after a successful rename


def _move_aside(target: Path, error: SegbenchError) -> None:
    """Rename a cached file that no longer checks out to `<name>.corrupt-<time>`, kept for inspection.

    Renamed rather than deleted: a file that changed under a pinned hash may be a failing disk or
    tampering, and the user should be able to look at it; it is never read again.
    """
    aside = target.with_name(f"{target.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        os.replace(target, aside)
    except FileNotFoundError:  # another process moved it first
        return
    message = f"segbench: warning: {error}; moved to {aside.name}, fetching it again"
    Console(stderr=True, soft_wrap=True).print(message, markup=False, highlight=False)


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


def _is_pdparams(file: str) -> bool:
    """Whether a path or URL names a PaddlePaddle weights file (by its suffix, as Paddle does)."""
    url = urlparse(file)
    name = unquote(url.path) if url.scheme in _URL_SCHEMES else file
    return Path(name).suffix.lower() == ".pdparams"


def _read_state_dict(path: Path, file: str, model_name: str) -> StateDict:
    """A `.pdparams` file (by the suffix of `file`, the path or URL named) through segbench's
    restricted reader; else torch.load with weights_only=True, unwrapping mmseg's
    {'meta', 'state_dict'} and torchvision's {'model'}."""
    if _is_pdparams(file):
        return read_pdparams(path, file, model_name)
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


_PADDLE_BN_STATISTICS = {"._mean": ".running_mean", "._variance": ".running_var"}


@register_key_adapter("paddleseg")
def paddleseg(state_dict: StateDict) -> StateDict:
    """PaddleSeg's names and layouts -> PyTorch's, for segbench models built in PaddleSeg's layout.

    BatchNorm statistics `<bn>._mean` / `<bn>._variance` become `running_mean` / `running_var`,
    with a zero `num_batches_tracked` (Paddle keeps no count; eval never reads it). Every 2-D
    `.weight` is taken for a Linear layer's, which Paddle stores [in, out], and is transposed.
    Limits: an nn.Embedding weight (2-D in both frameworks, not transposed) would be transposed
    wrongly, and a square Linear weight loads either way round, so strict loading cannot catch a
    model that breaks these rules; a Paddle `_mean` that is not a BatchNorm's is renamed too.
    """
    adapted = {}
    for key, value in state_dict.items():
        suffix = next((old for old in _PADDLE_BN_STATISTICS if key.endswith(old)), None)
        if suffix is not None:
            prefix = key[: -len(suffix)]
            adapted[prefix + _PADDLE_BN_STATISTICS[suffix]] = value
            adapted.setdefault(prefix + ".num_batches_tracked", torch.zeros((), dtype=torch.long))
        elif key.endswith(".weight") and value.dim() == 2:
            adapted[key] = value.t().contiguous()
        else:
            adapted[key] = value
    return adapted
