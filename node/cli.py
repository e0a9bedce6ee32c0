"""`squall node`: run one node, standalone or an ensemble member (also `python -m node`).

Flags override a ZooKeeper-style config file (``--config zoo.cfg``). Logs go
to stderr and to ``DATA_DIR/squall-node.log``; the line
``squall node serving on HOST:PORT`` says the port is open. SIGINT/SIGTERM
stop the node cleanly (exit 0).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys

import click

from node import failpoints, faults
from node.config import ConfigError, load_config

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The cyclic garbage collector's thresholds for a node process. With Python's default (700 net
# new objects start a young collection) a member under write load ran a young collection every
# few writes and a full one every half second or so: the Raft log holds every entry since the
# last snapshot (up to snapCount), so the heap keeps growing, and each full collection walked all
# of it (40-65 ms with 100k entries: a pause of the whole node, and about a tenth of its CPU),
# finding nothing (the write path makes no reference cycles). Measured on bench/saturation.py
# --members 1 --mix writes: 18k -> 26k writes/s, p99 56 -> 21 ms, GC time 0.43 -> 0.05 s.
GC_THRESHOLDS = (50_000, 20, 10)


def _setup_logging(data_dir) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter(LOG_FORMAT)
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(fmt)
    root.addHandler(err)
    fileh = logging.FileHandler(data_dir / "squall-node.log", encoding="utf-8")
    fileh.setFormatter(fmt)
    root.addHandler(fileh)


def _list_failpoints(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(failpoints.describe())
        ctx.exit(0)


def _loop_factory(kind: str):
    """uvloop's loop factory when asked for or (auto) when installed; None = the standard loop."""
    if kind == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise click.UsageError("--loop uvloop: the uvloop package is not installed; use --loop asyncio") from None
        return None
    return uvloop.new_event_loop


@click.command("node", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory for the write-ahead log, snapshots and the log file (dataDir).",
)
@click.option("--host", default=None, help="Address to listen on (clientPortAddress). Default 127.0.0.1.")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Client port (clientPort). Default 2181.")
@click.option(
    "--tick-ms",
    type=click.IntRange(10, 600_000),
    default=None,
    help="Tick time in ms (tickTime); session timeouts are clamped to 2..20 ticks. Default 2000.",
)
@click.option(
    "--max-frame-bytes",
    type=click.IntRange(1024, 256 * 1024 * 1024),
    default=None,
    help="Largest accepted packet (jute.maxbuffer). Default 1048576.",
)
@click.option(
    "--max-client-cnxns",
    type=click.IntRange(0, None),
    default=None,
    help="Connections allowed per client address, 0 = unlimited (maxClientCnxns). Default 60.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="ZooKeeper-style key=value config file; flags override it.",
)
@click.option(
    "--server-id",
    type=click.IntRange(1, 254),
    default=None,
    help="Server id (the high byte of session ids). Default 1.",
)
@click.option(
    "--id",
    "member_id",
    type=click.IntRange(1, 254),
    default=None,
    help="Ensemble member id (same as --server-id); must appear in --peers.",
)
@click.option(
    "--peers",
    default=None,
    metavar="1=HOST:CLIENT_PORT:PEER_PORT[:ELECTION_PORT][:ROLE],2=...",
    help="Run as a member of this ensemble (1, 3 or 5 participants; ROLE participant or observer) "
    "instead of standalone. The config file may give it as peers=... or ZooKeeper's "
    "server.N=host:peer_port:election_port[:role];client_port.",
)
@click.option(
    "--raft-tick-ms",
    type=click.IntRange(5, 10_000),
    default=None,
    help="Ensemble timer period in ms; a leader is suspected dead after 10..20 ticks. Default 25.",
)
@click.option(
    "--snapshot-every",
    type=click.IntRange(1, None),
    default=None,
    help="Transactions between snapshots (snapCount). Default 100000.",
)
@click.option(
    "--super-digest",
    default=None,
    metavar="USER:BASE64HASH",
    help="A digest id that bypasses every ACL (ZooKeeper's superDigest). Default: none.",
)
@click.option(
    "--jaas-config",
    default=None,
    metavar="FILE",
    help="A JAAS file (ZooKeeper's java.security.auth.login.config) whose Server section's"
    ' DigestLoginModule lists SASL users (user_NAME="password"); they may authenticate with'
    " SASL DIGEST-MD5 and are matched by sasl:NAME ACLs. Default: none (SASL clients get AuthFailed).",
)
@click.option(
    "--fsync-inline/--fsync-in-thread",
    default=None,
    help="fsync the log on the event loop (default: lower latency on fast disks, blocks the loop "
    "during fsync) or in a disk thread (the loop keeps reading requests meanwhile; better on "
    "slow disks).",
)
@click.option(
    "--loop",
    "loop_kind",
    type=click.Choice(["auto", "asyncio", "uvloop"]),
    default="auto",
    show_default=True,
    help="Event loop: uvloop when installed (auto), or the standard asyncio loop.",
)
@click.option(
    "--4lw-whitelist",
    "four_letter_words",
    default=None,
    metavar="WORD,WORD,...|*",
    help="Four-letter words the client port answers (4lw.commands.whitelist). Default: srvr only, "
    "as in ZooKeeper 3.8; srvr is always answered.",
)
@click.option(
    "--admin-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve the admin JSON API, /metrics and the web UI on this port (off unless given; 0 = any free port).",
)
@click.option(
    "--admin-host",
    default="127.0.0.1",
    show_default=True,
    help="Admin address; anything but loopback requires --admin-token.",
)
@click.option(
    "--admin-token",
    envvar="SQUALL_ADMIN_TOKEN",
    default=None,
    help="Token every admin request must carry (env SQUALL_ADMIN_TOKEN).",
)
@click.option(
    "--reconfig-enabled/--no-reconfig-enabled",
    default=None,
    help="Allow dynamic reconfiguration (reconfig requests: add or remove a member, one voter at a "
    "time; they need WRITE on /zookeeper/config, e.g. the superDigest user). Default: off, "
    "as ZooKeeper's reconfigEnabled.",
)
@click.option(
    "--join",
    is_flag=True,
    default=None,
    help="Join a running ensemble: start with no configuration and wait for its leader to add this "
    "member (a reconfig), then receive the data. --peers lists the current members and this one.",
)
@click.option(
    "--read-only/--no-read-only",
    default=None,
    help="Serve read-only sessions (clients that allow them) while cut off from the quorum, as "
    "ZooKeeper with -Dreadonlymode.enabled=true. Default: off.",
)
@click.option(
    "--enforce-quota/--no-enforce-quota",
    default=None,
    help="Refuse writes past a quota's hard limits with QuotaExceeded (zookeeper.enforceQuota). "
    "Default: off, as in ZooKeeper; every member of an ensemble must agree.",
)
@click.option(
    "--unsafe-test-fault",
    default=None,
    hidden=True,
    metavar="NAME",
    help="TEST ONLY: arm a deliberate bug (node/faults.py); env SQUALL_UNSAFE_TEST_FAULT works too.",
)
@click.option(
    "--failpoint",
    "failpoint_specs",
    multiple=True,
    metavar="NAME=ACTION",
    help="TEST ONLY: arm a failpoint (repeatable); ACTION is [P%][N*]off|panic|sleep(MS)|error. "
    "See --list-failpoints and docs/failpoints.md.",
)
@click.option(
    "--failpoint-http",
    default=None,
    metavar="HOST:PORT",
    help="TEST ONLY: serve gofail's HTTP API to arm and disarm failpoints at run time "
    "(GET /, PUT|GET|DELETE /NAME); loopback only, off by default.",
)
@click.option(
    "--list-failpoints",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_list_failpoints,
    help="Print every failpoint name, where it is and what error means there; then exit.",
)
def node_command(
    data_dir,
    host,
    port,
    tick_ms,
    max_frame_bytes,
    max_client_cnxns,
    config_file,
    server_id,
    member_id,
    peers,
    raft_tick_ms,
    snapshot_every,
    super_digest,
    jaas_config,
    fsync_inline,
    loop_kind,
    four_letter_words,
    admin_port,
    admin_host,
    admin_token,
    reconfig_enabled,
    join,
    read_only,
    enforce_quota,
    unsafe_test_fault,
    failpoint_specs,
    failpoint_http,
) -> None:
    """Run a ZooKeeper-compatible node (standalone, or an ensemble member with --peers) until Ctrl-C or SIGTERM.

    A standalone node is a one-member ensemble: the same replication code, storage and
    behaviour as a member of three or five, reported as "standalone" (as ZooKeeper does)."""
    from pathlib import Path

    if member_id is not None and server_id is not None and member_id != server_id:
        raise click.UsageError(f"--id {member_id} and --server-id {server_id} disagree; give one of them")
    overrides = {
        "data_dir": Path(data_dir) if data_dir else None,
        "host": host,
        "port": port,
        "tick_ms": tick_ms,
        "max_frame_bytes": max_frame_bytes,
        "max_client_cnxns": max_client_cnxns,
        "server_id": member_id if member_id is not None else server_id,
        "snapshot_every": snapshot_every,
        "super_digest": super_digest,
        "jaas_config": jaas_config,
        "fsync_inline": fsync_inline,
        "peers": peers,
        "raft_tick_ms": raft_tick_ms,
        "enforce_quota": enforce_quota,
        "reconfig_enabled": reconfig_enabled,
        "join": join,
        "read_only": read_only,
        "unsafe_test_fault": unsafe_test_fault or faults.from_env() or None,
        "failpoints": tuple(failpoint_specs) or None,
        "failpoint_http": failpoint_http,
    }
    try:
        if four_letter_words is not None:
            from node.admin.four_letter import parse_whitelist

            try:
                overrides["four_letter_words"] = parse_whitelist(four_letter_words)
            except ValueError as exc:
                raise ConfigError(f"--4lw-whitelist: {exc}") from None
        cfg, ignored = load_config(config_file, overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if cfg.join and not cfg.peers:
        raise click.UsageError("--join needs --peers: the running ensemble's members and this one")
    members: dict = {}
    if cfg.peers:
        from node.peer import parse_peers

        try:
            members = parse_peers(cfg.peers, any_size=cfg.join)
        except ValueError as exc:
            raise click.UsageError(f"--peers: {exc}") from None
        if cfg.server_id not in members:
            raise click.UsageError(f"--id {cfg.server_id} is not one of the peers' ids {sorted(members)}")
    try:
        faults.check(cfg.unsafe_test_fault, members=len(members) or 1)
    except faults.UnknownFault as exc:
        raise click.UsageError(str(exc)) from None
    admin = None
    if admin_port is not None:
        from node.admin.http import AdminConfigError, check_admin_options

        try:
            admin = check_admin_options(admin_host, admin_port, admin_token)
        except AdminConfigError as exc:
            raise click.UsageError(str(exc)) from None
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    _setup_logging(cfg.data_dir)
    log = logging.getLogger("squall.node")
    if ignored:
        log.info("config keys ignored (not used by squall): %s", ", ".join(ignored))

    from node.server import serve  # imported late: `squall node --help` stays fast

    if cfg.failpoints:
        for _ in range(3):
            log.warning(
                "!!! TEST-ONLY failpoints armed: %s; never use this node for real data !!!", ", ".join(cfg.failpoints)
            )
    from node.storage import CorruptLogError, LegacyDataError, RaftLogError, StorageLockedError

    if not cfg.fsync_inline:
        # The disk thread hands every fsync back to the loop; a shorter GIL switch interval keeps that
        # handoff from waiting up to 5 ms behind a busy loop.
        sys.setswitchinterval(0.0005)
    gc.set_threshold(*GC_THRESHOLDS)
    loop_factory = _loop_factory(loop_kind)
    log.info("event loop: %s", "uvloop" if loop_factory is not None else "asyncio")
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(cfg, admin=admin))
    except (StorageLockedError, CorruptLogError, RaftLogError, LegacyDataError) as exc:
        log.error("%s", exc)  # expected failures: the message says it all
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        log.error("cannot serve on %s:%d: %s", cfg.host, cfg.port, exc)
        raise click.ClickException(f"cannot serve on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from None
    except Exception as exc:  # recovery errors and the like: say what, exit non-zero
        log.exception("node failed")
        raise click.ClickException(f"node failed: {exc}") from None
    log.info("node stopped")
