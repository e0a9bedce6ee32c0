"""The `squall` command line: the composition root of the project.

This is the only module that knows every command, workload, nemesis,
database and backend by name. Subcommands live in their own modules and are
imported lazily, so `squall check` does not pay for the harness's imports.

Exit codes: 0 valid, 1 invalid, 2 unknown, 3 and above for bad input, usage
errors and failed setups (click's default of 2 for usage errors is remapped
to 3, so that 2 always means "unknown").
"""

from __future__ import annotations

import functools
import importlib
import sys

import click

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNKNOWN = 2
EXIT_BAD_INPUT = 3

# command name -> (module, attribute) of a click command
_COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("harness.check_cmd", "check"),
    "node": ("node.cli", "node_command"),
    "run": ("harness.run_cmd", "run"),
    "test-all": ("harness.run_cmd", "test_all"),
    "analyze": ("harness.run_cmd", "analyze_cmd"),
    "compare": ("harness.compare_cmd", "compare_cmd"),
    "sim": ("harness.sim_cmd", "sim"),
    "cluster": ("harness.cluster_cmd", "cluster"),
    "serve": ("harness.serve_cmd", "serve"),
    "selftest": ("harness.selftest_cmd", "selftest"),
}


# -- the registry: every concrete backend, database, workload and nemesis by
# name. Factories import lazily so `squall check` pays for none of them.

def _local_backend(options: dict):
    from harness.backends.local import LocalBackend
    return LocalBackend()


def _docker_backend(options: dict):
    from harness.backends import docker
    return docker.make(options)


def _ssh_backend(options: dict):
    from harness.backends import ssh
    return ssh.make(options)


def _squall_db(options: dict):
    from harness.dbs import squall
    return squall.make(options)


def _zookeeper_db(options: dict):
    from harness.dbs import zookeeper
    return zookeeper.make(options)


@functools.lru_cache(maxsize=1)
def _squall_default_nodes() -> int:
    """3 once the node's ensemble exists (it offers --peers), else 1 (asked once)."""
    from harness.dbs import squall
    return 3 if squall.supports_ensemble(squall.node_help()) else 1


def _register_workload(options: dict):
    from workloads import register
    return register.make(options)


def _set_workload(options: dict):
    from workloads import set as set_workload
    return set_workload.make(options)


def _lock_workload(options: dict):
    from workloads import lock
    return lock.make(options)


def _session_workload(options: dict):
    from workloads import session
    return session.make(options)


def _multi_workload(options: dict):
    from workloads import multi
    return multi.make(options)


def _watch_workload(options: dict):
    from workloads import watch
    return watch.make(options)


def _queue_workload(options: dict):
    from workloads import queue
    return queue.make(options)


def _counter_workload(options: dict):
    from workloads import counter
    return counter.make(options)


def _election_workload(options: dict):
    from workloads import election
    return election.make(options)


def _check_failpoint(spec: str):
    from node import failpoints  # the node's own list of points (the composition root may name node/)
    return failpoints.parse_spec(spec)


def _nemesis_package(faults, interval_s, rng):
    from nemesis.package import package
    return package(faults, interval_s, rng)


def _registry():
    from harness.registry import Registry
    return Registry(
        backends={"local": _local_backend, "docker": _docker_backend, "ssh": _ssh_backend},
        dbs={"squall": _squall_db, "zookeeper": _zookeeper_db},
        workloads={"register": _register_workload, "set": _set_workload,
                   "lock": _lock_workload, "session": _session_workload,
                   "multi": _multi_workload, "watch": _watch_workload, "queue": _queue_workload,
                   "counter": _counter_workload, "election": _election_workload},
        nemesis_faults=("partition", "pause", "kill", "packet", "clock", "disk"),
        backend_faults={"docker": ("partition", "pause", "kill", "packet", "disk"), "ssh": ("partition", "pause", "kill")},
        # targeted sequences --nemesis may name (nemesis/schedule.py SEQUENCE_FAULTS)
        nemesis_sequences={"lagging-follower": ("packet", "kill"), "kill-leader-in-partition": ("partition", "kill"),
                           "pause-majority": ("pause",)},
        nemesis_package=_nemesis_package,
        default_nodes={"squall": _squall_default_nodes},
        # test-only broken databases (the node's --unsafe-test-fault switch, node/faults.py)
        unsafe_db_faults=("lose-writes", "stale-reads", "sync-no-wait", "stale-reconnect", "drop-watch-events",
                          "multi-partial", "diverge", "skip-fsync", "idempotent-delete", "local-version-check",
                          "stale-read-cache", "throttle-leak",
                          # the selftest catalogue's (harness/selftest_catalogue.py)
                          "commit-without-quorum", "vote-ignores-log", "heartbeat-commit-beyond-match",
                          "read-index-no-quorum",
                          "recovery-truncates-last-entry", "late-watch-events", "setwatches-ignored",
                          "multi-version-off-by-one", "disconnect-drops-ephemerals"),
        # test-only failpoints (the node's --failpoint, node/failpoints.py), passed by the db's prepare
        failpoint_dbs=("squall",), check_failpoint=_check_failpoint,
    )


class _LazyGroup(click.Group):
    """A group whose subcommands are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in _COMMANDS:
            module_name, attr = _COMMANDS[name]
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="squall")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """squall: a ZooKeeper-compatible node and a chaos tester for consensus systems."""
    if ctx.obj is None:
        ctx.obj = _registry()


def main(argv: list[str] | None = None) -> None:
    """Console entry point; maps click's usage errors to exit code 3."""
    try:
        rc = cli.main(args=argv, prog_name="squall", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as exc:  # usage and bad-parameter errors
        exc.show()
        sys.exit(EXIT_BAD_INPUT)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
