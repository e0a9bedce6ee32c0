"""junit.xml: one test case per run, so CI systems show the verdict."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def junit_xml(test_name: str, results: dict[str, Any], duration_s: float) -> str:
    """invalid -> <failure>; unknown or no verdict -> <error>; valid -> passed."""
    valid = results.get("valid")
    suite = ET.Element(
        "testsuite",
        name="squall",
        tests="1",
        failures="1" if valid is False else "0",
        errors="1" if valid is not True and valid is not False else "0",
        time=f"{duration_s:.3f}",
    )
    case = ET.SubElement(suite, "testcase", classname="squall.run", name=test_name, time=f"{duration_s:.3f}")
    summary = str(results.get("summary", ""))
    explanation = str((results.get("result") or {}).get("explanation", ""))
    if valid is False:
        el = ET.SubElement(case, "failure", message=summary, type="invalid")
        el.text = explanation
    elif valid is not True:
        el = ET.SubElement(case, "error", message=summary, type=str(results.get("status", "unknown")))
        el.text = explanation
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def write_junit(path: str | Path, test_name: str, results: dict[str, Any], duration_s: float) -> Path:
    path = Path(path)
    path.write_text(junit_xml(test_name, results, duration_s), encoding="utf-8")
    return path
