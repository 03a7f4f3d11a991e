"""File digests for bundles: SHA-256 and size, and git-lfs pointer detection.

A repository clone without ``git lfs pull`` leaves ~130-byte text pointers where the model
files should be; recognising them lets the bundle check say exactly that instead of
"protobuf parsing failed".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

# Every git-lfs pointer file starts with this line (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md).
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"
# The spec caps pointer files at 1024 bytes; anything larger is real content.
LFS_POINTER_MAX_BYTES = 1024

_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class FileDigest:
    """SHA-256 (lowercase hex) and size in bytes of one file."""

    sha256: str
    bytes: int


def sha256_file(path: Path) -> str:
    """Lowercase hex SHA-256 of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def digest_file(path: Path) -> FileDigest:
    """SHA-256 and size of the file at ``path``."""
    path = Path(path)
    return FileDigest(sha256=sha256_file(path), bytes=path.stat().st_size)


@dataclass(frozen=True)
class LfsPointer:
    """What a git-lfs pointer says about the real file it stands for."""

    oid: str | None
    size: int | None
    pointer_bytes: int


def read_lfs_pointer(path: Path) -> LfsPointer | None:
    """Parse ``path`` as a git-lfs pointer; None when it is real content (or unreadable as one)."""
    path = Path(path)
    size = path.stat().st_size
    if size > LFS_POINTER_MAX_BYTES:
        return None
    data = path.read_bytes()
    if not data.startswith(LFS_POINTER_PREFIX):
        return None
    oid: str | None = None
    real_size: int | None = None
    for line in data.decode("utf-8", errors="replace").splitlines():
        key, _, value = line.partition(" ")
        if key == "oid":
            oid = value.strip()
        elif key == "size" and value.strip().isdigit():
            real_size = int(value.strip())
    return LfsPointer(oid=oid, size=real_size, pointer_bytes=size)


def is_lfs_pointer(path: Path) -> bool:
    """True when the file at ``path`` is a git-lfs pointer rather than the content it names."""
    return read_lfs_pointer(path) is not None
