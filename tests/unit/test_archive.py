"""Reject archive: files per reject, accept sampling, byte/file/age caps, free-space floor, a queue that never blocks."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_ad.errors import ConfigError
from edge_ad.monitor.archive import ArchiveConfig, ArchiveItem, RejectArchive, encode_item
from tests.helpers.fault_frames import BlockingWriter, FakeDisk, directory_bytes

MB = 1024 * 1024


def item(part_id: int, verdict: str = "reject", size: int = 32, seed: int = 0) -> ArchiveItem:
    """A noise image (PNG cannot shrink it much) and a small anomaly map."""
    rng = np.random.default_rng(seed + part_id)
    image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    heat = rng.random((4, 4), dtype=np.float32)
    return ArchiveItem(verdict, part_id, {"part_id": part_id, "verdict": verdict, "score": 1.5}, image, heat)


def config(tmp_path: Path, **overrides: object) -> ArchiveConfig:
    base: dict[str, object] = {"directory": tmp_path / "archive", "min_free_bytes": 0, "queue_size": 64}
    return ArchiveConfig(**(base | overrides))  # type: ignore[arg-type]


def archived(archive: RejectArchive, items: list[ArchiveItem]) -> dict[str, int]:
    for it in items:
        assert archive.submit(it)
        assert archive.wait_idle()
    return archive.counts()


def test_a_reject_is_written_as_image_heatmap_and_json(tmp_path: Path) -> None:
    archive = RejectArchive(config(tmp_path)).start()
    sample = item(7)
    counts = archived(archive, [sample])
    assert archive.close()
    assert (counts["written"], counts["write_errors"]) == (1, 0)
    names = sorted(p.name for p in (tmp_path / "archive").iterdir())
    assert names == ["00000000-reject-part7.heatmap.png", "00000000-reject-part7.json", "00000000-reject-part7.png"]
    image = cv2.cvtColor(cv2.imread(str(tmp_path / "archive" / names[2])), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(image, sample.image)  # lossless, RGB order kept
    heat = cv2.imread(str(tmp_path / "archive" / names[0]))
    assert heat.shape == (32, 32, 3)  # resized to the image
    record = json.loads((tmp_path / "archive" / names[1]).read_text())
    assert record["part_id"] == 7 and record["score"] == 1.5
    assert record["heatmap_range"] == pytest.approx([float(sample.heatmap.min()), float(sample.heatmap.max())])


def test_rejects_always_accepts_one_in_n(tmp_path: Path) -> None:
    archive = RejectArchive(config(tmp_path, accept_every=3))
    assert [archive.wants("accept") for _ in range(7)] == [True, False, False, True, False, False, True]
    assert archive.wants("reject") and archive.wants("fault_reject")
    assert archive.counts()["sampled_out"] == 4
    assert not RejectArchive(config(tmp_path, accept_every=0)).wants("accept")


def test_byte_cap_evicts_oldest_first(tmp_path: Path) -> None:
    one = sum(len(v) for v in encode_item(item(0)).values())
    archive = RejectArchive(config(tmp_path, max_bytes=5 * one + one // 2)).start()
    counts = archived(archive, [item(i) for i in range(12)])
    archive.close()
    on_disk, files = directory_bytes(tmp_path / "archive")
    assert on_disk <= 5 * one + one // 2 and on_disk == archive.store.bytes and files == archive.store.files
    kept = sorted({p.name.split("-")[0] for p in (tmp_path / "archive").iterdir()})
    assert kept == [f"{i:08d}" for i in range(7, 12)]  # the newest five
    assert (counts["written"], counts["evicted"]) == (12, 7)


def test_file_cap_counts_files_not_entries(tmp_path: Path) -> None:
    archive = RejectArchive(config(tmp_path, max_files=7)).start()
    archived(archive, [item(i) for i in range(5)])
    archive.close()
    assert directory_bytes(tmp_path / "archive")[1] == 6  # two entries of three files fit in seven


def test_age_cap_uses_the_injected_wall_clock(tmp_path: Path) -> None:
    now = [1000.0]
    archive = RejectArchive(config(tmp_path, max_age_s=60.0), now_s=lambda: now[0]).start()
    archived(archive, [item(0), item(1)])
    now[0] += 61.0
    counts = archived(archive, [item(2)])
    archive.close()
    assert counts["evicted_age"] == 2
    assert {p.name.split("-")[0] for p in (tmp_path / "archive").iterdir()} == {"00000002"}


def test_low_free_space_pauses_archiving_and_degrades_until_space_returns(tmp_path: Path) -> None:
    disk = FakeDisk(total=10 * MB, other=int(9.5 * MB))
    archive = RejectArchive(config(tmp_path, min_free_bytes=1 * MB), disk_usage=disk.usage).start()
    counts = archived(archive, [item(0), item(1)])
    assert (counts["skipped_low_space"], counts["written"]) == (2, 0)
    state, why = archive.status()
    assert state == "degraded" and "archive paused" in why and str(tmp_path) in why
    disk.other = 1 * MB
    counts = archived(archive, [item(2)])
    assert counts["written"] == 1 and archive.status() == ("ok", "")
    archive.close()


def test_a_write_error_is_counted_and_leaves_no_partial_entry(tmp_path: Path) -> None:
    disk = FakeDisk(total=10 * MB, other=10 * MB - 2000)  # the image fits, the rest does not
    archive = RejectArchive(config(tmp_path), disk_usage=lambda _p: disk.usage(_p)._replace(free=10 * MB), writer=disk.write).start()
    counts = archived(archive, [item(0)])
    assert counts["write_errors"] == 1 and counts["written"] == 0 and disk.enospc == 1
    assert list((tmp_path / "archive").iterdir()) == []
    disk.other = 0
    assert archived(archive, [item(1)])["written"] == 1  # the worker survived
    archive.close()


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    writer = BlockingWriter(max_block_s=10.0)
    archive = RejectArchive(config(tmp_path, queue_size=2), writer=writer).start()
    assert archive.submit(item(0))
    assert writer.entered.wait(5.0)  # the worker is stuck inside the first write
    results = [archive.submit(item(i)) for i in range(1, 10)]
    assert results == [True, True] + [False] * 7
    assert archive.counts()["dropped_queue_full"] == 7
    writer.unblock()
    assert archive.wait_idle() and archive.close()
    assert archive.counts()["written"] == 3


def test_entries_survive_a_restart_and_leftovers_are_cleaned(tmp_path: Path) -> None:
    archive = RejectArchive(config(tmp_path)).start()
    archived(archive, [item(0), item(1)])
    archive.close()
    folder = tmp_path / "archive"
    (folder / "00000005-reject-part9.png.tmp").write_bytes(b"half")
    (folder / "notes.txt").write_text("operator's file")
    again = RejectArchive(config(tmp_path, max_files=6)).start()
    assert (len(again.store), again.store.files, again.store.next_seq) == (2, 6, 2)
    archived(again, [item(2)])
    again.close()
    names = sorted(p.name for p in folder.iterdir())
    assert "00000005-reject-part9.png.tmp" not in names and "notes.txt" in names
    assert sorted({n.split("-")[0] for n in names if n != "notes.txt"}) == ["00000001", "00000002"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_bytes", 0, "archive.max_bytes: must be > 0"),
        ("max_files", 2, "archive.max_files: must be >= 3"),
        ("queue_size", 0, "archive.queue_size: must be >= 1"),
        ("accept_every", -1, "archive.accept_every: must be >= 0"),
        ("min_free_bytes", -5, "archive.min_free_bytes: must be >= 0"),
        ("max_age_s", 0.0, "archive.max_age_s: must be > 0"),
    ],
)
def test_config_is_validated(tmp_path: Path, field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, **{field: value})


def test_an_unusable_directory_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot be used"):
        RejectArchive(config(tmp_path, directory=blocker / "archive")).start()


def test_submit_from_many_threads_counts_every_item(tmp_path: Path) -> None:
    archive = RejectArchive(config(tmp_path, queue_size=1000)).start()
    threads = [threading.Thread(target=lambda k=k: [archive.submit(item(k * 10 + i, size=8)) for i in range(10)]) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert archive.wait_idle() and archive.close()
    counts = archive.counts()
    assert counts["submitted"] == 40 and counts["written"] + counts["dropped_queue_full"] == 40
