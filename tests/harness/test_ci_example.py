"""examples/github-actions.yml cannot rot: its `run:` steps are run here, in
the order and with the environment the workflow gives them, against a fresh
virtualenv that installs squall from this checkout (no network), with the
suite narrowed through the workflow's own variables."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from harness.summary import read_summary

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "github-actions.yml"


def load_job() -> dict:
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    (job,) = doc["jobs"].values()
    return job


def test_the_workflow_installs_runs_and_uploads_results_whatever_the_outcome():
    job = load_job()
    steps = job["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert uses[:2] == ["actions/checkout", "actions/setup-python"]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"].rstrip("/") == "results"
    assert steps.index(upload) == len(steps) - 1
    runs = [s["run"] for s in steps if "run" in s]
    assert any("pip install" in r for r in runs) and any("squall test-all" in r for r in runs)


def _venv_with_the_dependencies(tmp_path: Path) -> Path:
    """A fresh venv that sees this venv's packages (not squall itself) through a .pth file."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "squall-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return venv


def run_steps(job: dict, workspace: Path, venv: Path, overrides: dict[str, str]) -> list[subprocess.CompletedProcess]:
    """Each `run:` step as GitHub runs it on Linux (bash -eo pipefail), stopping at the first failure."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SQUALL_", "PIP_", "PYTEST_"))}
    base["PATH"] = f"{venv / 'bin'}{os.pathsep}{base['PATH']}"
    base["VIRTUAL_ENV"] = str(venv)
    done = []
    for step in job["steps"]:
        if "run" not in step:
            continue
        env = {
            **base,
            **{k: str(v) for k, v in (job.get("env") or {}).items()},
            **{k: str(v) for k, v in (step.get("env") or {}).items()},
            **overrides,
        }
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        done.append(proc)
        if proc.returncode != 0:
            break
    return done


@pytest.mark.slow
@pytest.mark.integration
def test_the_workflow_steps_run_locally_and_gate_on_the_verdict(tmp_path):
    job = load_job()
    venv = _venv_with_the_dependencies(tmp_path)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    quick = {
        "SQUALL_PACKAGE": str(ROOT),
        "SQUALL_PIP_OPTIONS": "-q --no-index --no-deps --no-build-isolation",
        "SQUALL_WORKLOADS": "set,register",
        "SQUALL_NEMESES": "kill",
        "SQUALL_TIME_LIMIT": "2",
        "SQUALL_FLAGS": "--nodes 1 --nemesis-interval 1",
    }
    steps = run_steps(job, workspace, venv, quick)
    assert [p.returncode for p in steps] == [0, 0], "\n".join(p.stdout + p.stderr for p in steps)
    # squall ran from the venv the workflow installed it into, not from this checkout
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import harness; print(harness.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    assert str(venv) in installed, installed
    suite = workspace / "results" / "test-all" / "latest"
    doc = read_summary(suite)
    assert doc["verdict"] == "valid" and [r["workload"] for r in doc["runs"]] == ["set", "register"]
    assert ET.parse(suite / "junit.xml").getroot().get("tests") == "2"
    assert all(r["report"] and Path(r["report"]).is_file() for r in doc["runs"])  # templates were installed too

    # the same steps fail the job when the database loses writes
    broken = run_steps(
        job,
        workspace,
        venv,
        {
            **quick,
            "SQUALL_WORKLOADS": "set",
            "SQUALL_NEMESES": "none",
            "SQUALL_FLAGS": "--nodes 1 --unsafe-db-fault lose-writes",
        },
    )
    assert [p.returncode for p in broken] == [0, 1], "\n".join(p.stdout + p.stderr for p in broken)
    assert read_summary(suite)["verdict"] == "invalid"
