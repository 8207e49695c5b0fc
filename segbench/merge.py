"""`segbench merge ARCHIVE`: records from a GPU window's archive (.tar.gz) into results/.

The archive is untrusted data: members are read as bytes (never extracted), only regular files
at `.../results/<hardware>/<model>.json` are considered, and names become paths only after they
pass a strict pattern (no '..', no '/', no leading dot). A record is refused when its schema
version differs or it fails the readers' validation (records.py); a record already in results/
that is as new or newer (by `environment.date`) is kept. No torch here.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segbench.errors import SegbenchError
from segbench import records
from segbench.records import SCHEMA_VERSION, read_record, write_record

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
MAX_RECORD_BYTES = 64 * 2**20


@dataclass
class MergeResult:
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # results/ already holds this record or a newer one
    refused: list[str] = field(default_factory=list)  # "<member>: why"


def _date(record: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(record["environment"]["date"])


def record_problem(record: Any, hardware: str, filename: str) -> str | None:
    """Why a record cannot be merged under results/<hardware>/<filename>; None when it can.

    The readers' own validation (records.record_problem, placement_problem) plus a dated
    environment, since merge keeps whichever record of a model is newer."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("schema_version") != SCHEMA_VERSION:
        return f"field 'schema_version': expected {SCHEMA_VERSION}, got {record.get('schema_version')!r}"
    problem = records.record_problem(record) or records.placement_problem(Path(hardware, filename), record)
    if problem:
        field, expected, value = problem
        return f"field {field!r}: expected {expected}, got {repr(value)[:80]}"
    try:
        date = _date(record)
    except ValueError:
        return f"field 'environment.date': not an ISO 8601 date: {record['environment']['date']!r}"
    if date.tzinfo is None:
        return "field 'environment.date': has no time zone"
    return None


def _members(archive: Path) -> list[tuple[str, str, bytes | str]]:
    """(hardware, file name, bytes or why refused) for every member at .../results/<hardware>/<name>.json."""
    found = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if len(parts) < 3 or parts[-3] != "results" or not parts[-1].endswith(".json"):
                    continue
                hardware, name = parts[-2], parts[-1]
                if not member.isfile():
                    found.append((hardware, name, "not a regular file"))
                elif ".." in parts or member.name.startswith("/") or not (SAFE_NAME.fullmatch(hardware) and SAFE_NAME.fullmatch(name)):
                    found.append((hardware, name, "unsafe name"))
                elif member.size > MAX_RECORD_BYTES:
                    found.append((hardware, name, f"{member.size} bytes, over {MAX_RECORD_BYTES}"))
                else:
                    found.append((hardware, name, tar.extractfile(member).read()))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise SegbenchError(f"{archive}: not a readable .tar.gz archive ({type(exc).__name__}: {exc}); nothing merged") from exc
    return found


def merge_archive(archive: str | Path, results_dir: str | Path) -> MergeResult:
    """Merge the archive's records into results_dir: refused, kept (as new or newer there) or written."""
    archive, results_dir = Path(archive), Path(results_dir)
    if not archive.is_file():
        raise SegbenchError(f"{archive}: no such archive")
    result = MergeResult()
    for hardware, name, content in _members(archive):
        where = f"results/{hardware}/{name}"
        if isinstance(content, str):
            result.refused.append(f"{where}: {content}")
            continue
        try:
            record = json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            result.refused.append(f"{where}: not JSON ({exc})")
            continue
        problem = record_problem(record, hardware, name)
        if problem:
            result.refused.append(f"{where}: {problem}")
            continue
        target = results_dir / hardware / name
        if target.exists():
            try:
                existing = read_record(target)
                newer_here = _date(existing) >= _date(record)
            except (SegbenchError, KeyError, TypeError, ValueError):
                newer_here = False  # an unreadable record in results/ gives way
            if newer_here:
                result.kept.append(where)
                continue
        write_record(target, record)
        result.written.append(where)
    return result
