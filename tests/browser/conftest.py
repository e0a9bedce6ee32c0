"""Playwright driving Debian's chromium (headless, --no-sandbox): fixtures, screenshots and their check.

Skipped with a message when Playwright or /usr/bin/chromium is missing, unless
CI=true, where that is a failure. Playwright's own browser download is never
used: ``executable_path`` points at Debian's chromium.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("SQUALL_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _skip_or_fail(message: str) -> None:
    if _in_ci():
        pytest.fail(message + "; CI=true, so the browser tests must run")
    pytest.skip(message)


# Package scope, not session: Playwright's sync API keeps an event loop running
# in the main thread while it is started, which would break every later test
# (in other packages) that calls asyncio.run().
@pytest.fixture(scope="package")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("Playwright is not installed (pip install playwright; no `playwright install` needed)")
    if not CHROMIUM.exists():
        _skip_or_fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
        assert not errors, f"JavaScript errors on the page: {errors}"
    finally:
        context.close()


@pytest.fixture(scope="session")
def shots_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture()
def screenshot(page, shots_dir):
    """``screenshot(name)`` writes a full-page PNG and asserts it is not blank; returns the path."""

    def take(name: str) -> Path:
        path = shots_dir / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        colours = distinct_colours(path.read_bytes())
        assert colours >= 16, f"{path} looks blank: only {colours} distinct colours"
        return path

    return take


def distinct_colours(png: bytes, limit: int = 4096) -> int:
    """Distinct pixel colours of a PNG: Pillow when present, else a small pure-Python decoder."""
    try:
        import io

        from PIL import Image
    except ImportError:
        return _distinct_colours_pure(png, limit)
    with Image.open(io.BytesIO(png)) as img:
        colours = img.convert("RGB").getcolors(maxcolors=limit)
    return limit if colours is None else len(colours)


def _distinct_colours_pure(png: bytes, limit: int = 4096, max_rows: int = 400) -> int:
    """8-bit, non-interlaced RGB/RGBA/grey PNGs only; decodes the first ``max_rows`` rows (enough to tell blank)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        chunk = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.append(chunk)
        pos += 12 + length
    assert header is not None
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and interlace == 0, f"unsupported PNG (depth {depth}, interlace {interlace})"
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    prev = bytearray(stride)
    seen: set[bytes] = set()
    offset = 0
    for _ in range(min(height, max_rows)):
        ftype = raw[offset]
        line = bytearray(raw[offset + 1 : offset + 1 + stride])
        offset += 1 + stride
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        for x in range(0, stride, channels * 3):  # every third pixel is plenty to tell blank from not
            seen.add(bytes(line[x : x + channels]))
        if len(seen) >= limit:
            break
        prev = line
    return len(seen)
