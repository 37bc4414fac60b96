"""``trodo-trace status``: the local store and the disk spool (size, batches waiting, oldest age)."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from .spool import DESTINATION_FILE, SpoolFile, list_files, read_file

_NOUNS = {"traces": "spans", "logs": "log records"}


def spool_root(store_path: Path) -> Path:
    """The spool root for a store: ``$TRODO_SPOOL_DIR`` or ``spool/`` beside the store file."""
    configured = os.environ.get("TRODO_SPOOL_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(store_path).expanduser().parent / "spool"


def _human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


def _human_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _files(directory: Path) -> list[SpoolFile]:
    """The batches the SDK would send from ``directory``, each with its item count read from its content
    (a file name can say anything); files that are not requests this SDK wrote are left out."""
    from .otlp_transport import count_items

    found = []
    for entry in list_files(directory):
        body = read_file(entry)
        count = count_items(entry.signal, body) if body is not None else None
        if count is not None:
            found.append(dataclasses.replace(entry, count=count))
    return found


def main(store_path: Path) -> int:
    """Print the store and spool state; exit code 0.

    Example:
        >>> main(Path("/tmp/no-such-dir/trodo.db"))  # doctest: +ELLIPSIS
        local store: /tmp/no-such-dir/trodo.db (not created yet)
        spool: /tmp/no-such-dir/spool (empty)
        0
    """
    store_path = Path(store_path).expanduser()
    if store_path.exists():
        print(f"local store: {store_path} ({_human_bytes(store_path.stat().st_size)})")
    else:
        print(f"local store: {store_path} (not created yet)")
    root = spool_root(store_path)
    destinations = (
        sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()) if root.is_dir() else []
    )
    rows = []
    now_ns = time.time_ns()
    for directory in destinations:
        files = _files(directory)
        if not files:
            continue
        marker = directory / DESTINATION_FILE
        destination = directory.name
        if marker.is_file() and not marker.is_symlink():
            text = marker.read_text(encoding="utf-8", errors="replace").strip()[:500]
            destination = "".join(ch for ch in text if ch.isprintable()) or destination
        by_signal: dict[str, int] = {}
        for entry in files:
            by_signal[entry.signal] = by_signal.get(entry.signal, 0) + entry.count
        oldest = min(entry.written_ns for entry in files)
        rows.append((destination, files, by_signal, (now_ns - oldest) / 1e9))
    if not rows:
        print(f"spool: {root} (empty)")
        return 0
    total = sum(entry.size for _, files, _, _ in rows for entry in files)
    print(f"spool: {root} ({_human_bytes(total)} in {sum(len(files) for _, files, _, _ in rows)} batches)")
    for destination, files, by_signal, age in rows:
        counts = ", ".join(
            f"{count} {_NOUNS.get(signal, signal)}" for signal, count in sorted(by_signal.items())
        )
        size = _human_bytes(sum(entry.size for entry in files))
        print(f"  {destination}: {len(files)} batches, {size}, {counts}; oldest {_human_age(age)} ago")
    return 0
