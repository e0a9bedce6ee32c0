"""What the disk fault's FUSE mount costs: synced appends and reads, direct vs through lazyfs.

Prints, for a plain directory and for a lazyfs mount of one: appends of
``--size`` bytes each followed by fdatasync (a WAL's pattern) per second,
unsynced appends per second, sequential read MB/s, and how long a drop of
everything unsynced takes. Needs FUSE (``/dev/fuse``, ``fusermount3``,
mfusepy); the mount is always unmounted.

Usage: python bench/lazyfs.py [--count 2000] [--size 512]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.backends import lazyfs  # noqa: E402


def appends(path: Path, count: int, size: int, sync: bool) -> float:
    record = b"r" * size
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        start = time.perf_counter()
        for _ in range(count):
            os.write(fd, record)
            if sync:
                os.fdatasync(fd)
        return count / (time.perf_counter() - start)
    finally:
        os.close(fd)


def read_mb_s(path: Path) -> float:
    start = time.perf_counter()
    with open(path, "rb") as f:
        n = sum(len(chunk) for chunk in iter(lambda: f.read(1 << 16), b""))
    return n / (1 << 20) / (time.perf_counter() - start)


def measure(d: Path, count: int, size: int) -> dict[str, float]:
    return {
        "synced appends/s": appends(d / "synced", count, size, True),
        "unsynced appends/s": appends(d / "unsynced", count, size, False),
        "read MB/s": read_mb_s(d / "synced"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    lazyfs.require_fuse()
    print(f"load average: {os.getloadavg()[0]:.1f} (shared machine: figures are noisy)")
    with tempfile.TemporaryDirectory(prefix="squall-bench-lazyfs-") as tmp:
        plain = Path(tmp) / "plain"
        plain.mkdir()
        rows = {"plain dir": measure(plain, args.count, args.size)}
        node_dir = Path(tmp) / "n1"
        (node_dir / "data").mkdir(parents=True)
        mount = lazyfs.mount_data_dir(node_dir, Path(tmp) / "lazyfs.log")
        try:
            rows["lazyfs"] = measure(mount.mountpoint, args.count, args.size)
            appends(mount.mountpoint / "synced", args.count, args.size, False)  # something to drop
            start = time.perf_counter()
            lost = mount.drop()
            drop_s = time.perf_counter() - start
        finally:
            mount.close()
    print(f"{args.count} appends of {args.size} B")
    print(f"{'':12} {'synced appends/s':>17} {'unsynced appends/s':>19} {'read MB/s':>10}")
    for name, r in rows.items():
        print(f"{name:12} {r['synced appends/s']:17.0f} {r['unsynced appends/s']:19.0f} {r['read MB/s']:10.1f}")
    print(
        f"drop: {drop_s * 1000:.1f} ms ({lost['bytes_cut']} bytes cut, {len(lost['removed_entries'])} entries removed)"
    )


if __name__ == "__main__":
    main()
