"""kazoo's whole test suite, counted per module, against the node and Apache ZooKeeper 3.8.

Four targets, one at a time (they never share the CPUs):

- ``node-1``: a standalone squall node (``squall node`` without peers);
- ``node-3``: a 3-member squall ensemble on loopback;
- ``zk-1``: Apache ZooKeeper 3.8 standalone (Debian's ``zookeeper`` package);
- ``zk-3``: a 3-member ZooKeeper ensemble.

Every target is configured as kazoo's own harness configures ZooKeeper:
tickTime 2000, ``maxClientCnxns=0``, ``reconfigEnabled``, the superDigest of ``super:test``,
read-only mode (``-Dreadonlymode.enabled=true``; ``--read-only`` for the
node) and SASL DIGEST-MD5 with the users of kazoo's JAAS file (ZooKeeper's
``java.security.auth.login.config`` and its SASL ACL provider; the node's
``--jaas-config``). Neither gets a TLS port: the node has no TLS, so
kazoo's TLS test fails on all four (under kazoo's own harness ZooKeeper
passes it). kazoo's gevent, eventlet and SASL tests skip unless ``gevent``,
``eventlet`` and ``pure-sasl`` are installed (``pip install -e '.[dev,kazoo-suite]'``).

kazoo's tests run in a subprocess through ``tests/node/kazoo_ext_plugin.py``,
with a ``ClusterControl`` so the tests that stop and restart servers (host-list
updates, request queuing, read-only mode) stop and restart our members; this
process owns every server and kills them all at the end, on error and on
Ctrl-C too.

The result of each target is saved as ``<out>/<target>.json`` (every test's
outcome and first message line; the servers' logs and kazoo's output in
``<out>/<target>-logs/``), and the table is printed from every saved
target in ``--out``, so one target can be rerun alone. The table gives
passed/failed/errors/skipped per module and target, then the modules where the
node passes fewer tests than ZooKeeper of the same shape (node-1 against zk-1,
node-3 against zk-3), then every test that fails on the node but passes on
ZooKeeper, with its message.

Exit code: 0 when the node passes at least ZooKeeper's count on every module
(for every pair measured), 1 when not, 3 when nothing could be compared or a
target could not run.

Usage::

    python bench/kazoo_suite.py [--targets node-1,node-3,zk-1,zk-3] [--out results/kazoo-suite]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import kazoo.tests  # noqa: E402

from tests.node.kazoo_ext_plugin import ClusterControl  # noqa: E402
from tests.node.servers import (  # noqa: E402
    REPO_ROOT,
    ZOOKEEPER_SUPER_DIGEST,
    ServerProcess,
    free_port,
    server_mode,
    squall_node,
    zookeeper_ensemble,
    zookeeper_installed,
    zookeeper_standalone,
)
from tests.node.test_kazoo_suite import Outcome, run_kazoo_suite  # noqa: E402

TARGETS = ("node-1", "node-3", "zk-1", "zk-3")
PAIRS = (("node-1", "zk-1"), ("node-3", "zk-3"))
STATUSES = ("passed", "failed", "error", "skipped")
# kazoo's harness (and tests/node/servers.py) gives ZooKeeper maxClientCnxns=0 (no per-address limit)
NODE_ARGS = ["--reconfig-enabled", "--super-digest", ZOOKEEPER_SUPER_DIGEST, "--read-only", "--max-client-cnxns", "0"]
ZK_CONFIG = {
    "reconfigEnabled": "true",
    "authProvider.1": "org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
}
ZK_JAVA = ["-Dreadonlymode.enabled=true", "-Dfile.encoding=UTF-8"]
# kazoo's harness gives ZooKeeper this JAAS section for its SASL DIGEST-MD5 tests (test_sasl);
# the node reads the same file (--jaas-config)
JAAS = """Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_super="super_secret"
    user_jaasuser="jaas_password";
};
"""
LEADER_WAIT_S = 60.0


def all_modules() -> list[str]:
    """Every ``test_*`` module kazoo ships (its whole suite)."""
    return sorted(p.stem for p in Path(kazoo.tests.__file__).parent.glob("test_*.py"))


def build(target: str, base: Path) -> list[ServerProcess]:
    """The (not yet started) servers of ``target`` under ``base``."""
    base.mkdir(parents=True, exist_ok=True)
    jaas = base / "jaas.conf"
    jaas.write_text(JAAS)
    node_args = [*NODE_ARGS, "--jaas-config", str(jaas)]
    java = [*ZK_JAVA, f"-Djava.security.auth.login.config={jaas}"]
    if target == "node-1":
        return [squall_node(base / "n1" / "data", extra_args=node_args, log_path=base / "n1.out")]
    if target == "node-3":
        ports = [(free_port(), free_port()) for _ in range(3)]
        peers = ",".join(f"{i}=127.0.0.1:{c}:{p}" for i, (c, p) in enumerate(ports, start=1))
        return [
            squall_node(
                base / f"n{i}" / "data",
                port=c,
                extra_args=["--id", str(i), "--peers", peers, *node_args],
                log_path=base / f"n{i}.out",
            )
            for i, (c, _) in enumerate(ports, start=1)
        ]
    if target == "zk-1":
        server = zookeeper_standalone(base / "zk1", extra_config=ZK_CONFIG)
        server.argv[1:1] = java
        return [server]
    if target == "zk-3":
        return zookeeper_ensemble(base, extra_config=ZK_CONFIG, java_props=java)
    raise ValueError(f"unknown target {target!r}; allowed: {', '.join(TARGETS)}")


def wait_ready(members: list[ServerProcess]) -> None:
    """A standalone server is ready once started; an ensemble once one leads and the others follow."""
    if len(members) == 1:
        return
    deadline = time.monotonic() + LEADER_WAIT_S
    modes: list[str] = []
    while time.monotonic() < deadline:
        modes = [server_mode(m) for m in members]
        if sorted(modes) == ["follower", "follower", "leader"]:
            return
        time.sleep(0.2)
    raise RuntimeError(f"no leader with two followers within {LEADER_WAIT_S:.0f}s: {modes}")


def run_target(target: str, modules: list[str], base: Path, timeout_s: float, logs: Path) -> list[Outcome]:
    """Run kazoo's ``modules`` against a fresh ``target``; its servers' logs and kazoo's output go to ``logs``."""
    members = build(target, base)
    try:
        for m in members:
            m.start()
        wait_ready(members)
        with ClusterControl(members) as control:
            return run_kazoo_suite(
                ",".join(m.address for m in members),
                base / "kazoo",
                modules,
                timeout_s=timeout_s,
                extra_env=control.env(),
            )
    finally:
        for m in members:
            m.kill()
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(parents=True)
        for i, m in enumerate(members, start=1):
            if m.log_path.exists():
                shutil.copy(m.log_path, logs / f"server{i}.log")
        if (base / "kazoo" / "kazoo-output.txt").exists():
            shutil.copy(base / "kazoo" / "kazoo-output.txt", logs / "kazoo-output.txt")


def first_line(message: str) -> str:
    lines = message.strip().splitlines()
    return lines[0][:200] if lines else "(no message)"


def save(out: Path, target: str, outcomes: list[Outcome], seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "target": target,
        "seconds": round(seconds, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "outcomes": [{"id": o.test_id, "status": o.status, "message": first_line(o.message)} for o in outcomes],
    }
    (out / f"{target}.json").write_text(json.dumps(record, indent=1) + "\n")


def load(out: Path) -> dict[str, dict]:
    return {t: json.loads((out / f"{t}.json").read_text()) for t in TARGETS if (out / f"{t}.json").exists()}


def class_modules() -> dict[str, str]:
    """Test class -> the kazoo module defining it.

    A test's id names the file of its function, so kazoo's gevent and eventlet
    client classes (subclasses of test_client's TestClient, in their own modules)
    would count under test_client; the table counts them under their own module."""
    out = {}
    for path in Path(kazoo.tests.__file__).parent.glob("test_*.py"):
        for name in re.findall(r"^class (\w+)", path.read_text(encoding="utf-8"), re.M):
            out[name] = path.stem
    return out


def counts_by_module(outcomes: Iterable[dict]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    modules = class_modules()
    for o in outcomes:
        parts = o["id"].split("::")
        module = modules.get(parts[1], parts[0]) if len(parts) == 3 else parts[0]
        row = table.setdefault(module, dict.fromkeys(STATUSES, 0))
        row[o["status"]] += 1
    return table


def report(records: dict[str, dict]) -> tuple[str, bool]:
    """The table and the comparison; the flag is True when the node is at least ZooKeeper everywhere."""
    targets = [t for t in TARGETS if t in records]
    by_target = {t: counts_by_module(records[t]["outcomes"]) for t in targets}
    modules = sorted({m for t in targets for m in by_target[t]})
    lines = ["counts are passed/failed/errors/skipped", ""]
    lines.append(f"{'module':<28}" + "".join(f"{t:>16}" for t in targets))
    totals = {t: dict.fromkeys(STATUSES, 0) for t in targets}
    for module in modules:
        row = f"{module:<28}"
        for t in targets:
            c = by_target[t].get(module)
            if c is None:
                row += f"{'-':>16}"
                continue
            row += f"{'/'.join(str(c[s]) for s in STATUSES):>16}"
            for s in STATUSES:
                totals[t][s] += c[s]
        lines.append(row)
    lines.append(f"{'total':<28}" + "".join(f"{'/'.join(str(totals[t][s]) for s in STATUSES):>16}" for t in targets))
    for t in targets:
        r = records[t]
        lines.append(f"  {t}: {r['seconds']:.0f} s, finished {r['finished']}, load average {r['load_average']}")
    ok, compared = True, False
    for node, zk in PAIRS:
        if node not in records or zk not in records:
            continue
        compared = True
        fewer = [
            f"{m} ({by_target[node].get(m, {}).get('passed', 0)} < {by_target[zk][m]['passed']})"
            for m in modules
            if m in by_target[zk] and by_target[node].get(m, {}).get("passed", 0) < by_target[zk][m]["passed"]
        ]
        ok = ok and not fewer
        lines += ["", f"{node} vs {zk}: modules where the node passes fewer: {', '.join(fewer) or 'none'}"]
        zk_status = {o["id"]: o["status"] for o in records[zk]["outcomes"]}
        for o in records[node]["outcomes"]:
            if o["status"] != "passed" and zk_status.get(o["id"]) == "passed":
                lines.append(f"  node-only {o['status']}: {o['id']}: {o['message']}")
        node_status = {o["id"]: o["status"] for o in records[node]["outcomes"]}
        for o in records[zk]["outcomes"]:
            if o["status"] != "passed" and node_status.get(o["id"]) == "passed":
                lines.append(f"  ZooKeeper-only {o['status']}: {o['id']}: {o['message']}")
    return "\n".join(lines), ok and compared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help=f"comma-separated targets to run (default all: {','.join(TARGETS)}); 'none' prints the saved table",
    )
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "results" / "kazoo-suite", help="where results are saved and read"
    )
    parser.add_argument("--modules", default="", help="comma-separated kazoo test modules (default: all of them)")
    parser.add_argument("--timeout", type=float, default=2400, help="seconds per target (default 2400)")
    args = parser.parse_args(argv)
    logging.getLogger("kazoo.client").setLevel(logging.CRITICAL)
    targets = [] if args.targets == "none" else [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; allowed: {', '.join(TARGETS)} or 'none'")
    known = all_modules()
    modules = [m.strip() for m in args.modules.split(",") if m.strip()] or known
    if bad := [m for m in modules if m not in known]:
        parser.error(f"unknown kazoo module(s) {', '.join(bad)}; allowed: {', '.join(known)}")
    if not 10 <= args.timeout <= 7200:
        parser.error(f"--timeout {args.timeout} is out of range; allowed: 10..7200 seconds")
    failed = False
    for target in targets:
        if target.startswith("zk") and not zookeeper_installed():
            print(f"{target}: Debian's zookeeper package is not installed; skipped", file=sys.stderr)
            continue
        print(f"{target}: running {len(modules)} kazoo modules ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"kazoo-{target}-") as tmp:
            try:
                outcomes = run_target(target, modules, Path(tmp), args.timeout, args.out / f"{target}-logs")
            except Exception as exc:  # one target's failure must not hide the others' figures
                print(f"{target}: could not run: {exc}", file=sys.stderr)
                failed = True
                continue
        save(args.out, target, outcomes, time.monotonic() - started)
        passed = sum(o.status == "passed" for o in outcomes)
        print(f"{target}: {passed}/{len(outcomes)} passed", file=sys.stderr, flush=True)
    records = load(args.out)
    if not records:
        print(f"no saved results in {args.out}", file=sys.stderr)
        return 3
    text, ok = report(records)
    print(text)
    if failed:
        return 3
    if not any(n in records and z in records for n, z in PAIRS):
        print("no node/ZooKeeper pair measured: nothing to compare", file=sys.stderr)
        return 3
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
