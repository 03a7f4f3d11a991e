"""The archive's files on disk: entries written atomically, listed oldest first, evicted to fit caps.

An entry is a group of files sharing a stem ``NNNNNNNN-<verdict>-part<id>`` (sequence number first,
so names sort by age): ``.png`` (the scored image), ``.heatmap.png`` and ``.json``. Files are written
under a ``.tmp`` name and renamed, so a full disk or a crash never leaves a half entry that looks
complete; leftovers are removed when the store opens. The store is used by one thread (the
archive worker) and does no locking of its own.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge_ad.errors import ConfigError

TMP_SUFFIX = ".tmp"
_ENTRY_FILE = re.compile(r"^(\d{8})-[A-Za-z0-9_]+(?:-part-?\d+)?\.")

WriteFile = Callable[[Path, bytes], None]


def write_file(path: Path, data: bytes) -> None:
    """Default writer: plain buffered write (the archive's caller injects slow or failing ones in tests)."""
    with path.open("wb") as handle:
        handle.write(data)


@dataclass
class Entry:
    """One archived event: its sequence number, files, total bytes and creation time (seconds, wall clock)."""

    seq: int
    files: list[Path] = field(default_factory=list)
    bytes: int = 0
    created_s: float = 0.0


class ArchiveStore:
    """Entries in ``directory``, oldest first, with byte and file totals kept current."""

    def __init__(self, directory: Path, writer: WriteFile = write_file) -> None:
        self.directory = Path(directory)
        self._write = writer
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self.bytes = 0
        self.files = 0
        self.next_seq = 0

    def open(self) -> None:
        """Create the folder, drop half-written leftovers and index the entries already there."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            found: dict[int, Entry] = {}
            for path in self.directory.iterdir():
                if path.name.endswith(TMP_SUFFIX):
                    path.unlink(missing_ok=True)
                    continue
                match = _ENTRY_FILE.match(path.name)
                if match is None or not path.is_file():
                    continue  # not ours: never counted, never deleted
                stat = path.stat()
                entry = found.setdefault(int(match.group(1)), Entry(int(match.group(1))))
                entry.files.append(path)
                entry.bytes += stat.st_size
                entry.created_s = max(entry.created_s, stat.st_mtime)
        except OSError as exc:
            raise ConfigError(f"archive directory {self.directory}: cannot be used: {exc}") from exc
        for seq in sorted(found):
            self._index(found[seq])
        self.next_seq = max(found, default=-1) + 1

    def _index(self, entry: Entry) -> None:
        self._entries[entry.seq] = entry
        self.bytes += entry.bytes
        self.files += len(entry.files)

    def __len__(self) -> int:
        return len(self._entries)

    def oldest(self) -> Entry | None:
        """The oldest entry, None when empty."""
        return next(iter(self._entries.values()), None)

    def add(self, stem_tail: str, files: Mapping[str, bytes], created_s: float) -> Entry:
        """Write one entry (suffix -> content) under the next sequence number; OSError leaves nothing behind."""
        seq = self.next_seq
        self.next_seq += 1
        entry = Entry(seq, created_s=created_s)
        stem = f"{seq:08d}-{stem_tail}"
        try:
            for suffix, data in files.items():
                final = self.directory / f"{stem}{suffix}"
                tmp = final.with_name(final.name + TMP_SUFFIX)
                try:
                    self._write(tmp, data)
                    tmp.replace(final)
                finally:
                    tmp.unlink(missing_ok=True)
                entry.files.append(final)
                entry.bytes += len(data)
        except OSError:
            self._remove_files(entry)
            raise
        self._index(entry)
        return entry

    def evict_oldest(self) -> Entry | None:
        """Delete the oldest entry's files; returns it (None when empty)."""
        if not self._entries:
            return None
        _seq, entry = self._entries.popitem(last=False)
        self.bytes -= entry.bytes
        self.files -= len(entry.files)
        self._remove_files(entry)
        return entry

    @staticmethod
    def _remove_files(entry: Entry) -> None:
        for path in entry.files:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass  # already gone or unremovable: the index forgets it either way
