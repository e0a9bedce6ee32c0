"""The `squall` command line: the composition root of the project.

This is the only module that knows every command and backend by name; the
databases, workloads, nemeses and checkers are plugins found through entry
points (``harness/plugins.py``; squall's own are registered in
pyproject.toml). Subcommands live in their own modules and are imported
lazily, so `squall check` does not pay for the harness's imports.

Exit codes: 0 valid, 1 invalid, 2 unknown, 3 and above for bad input, usage
errors and failed setups (click's default of 2 for usage errors is remapped
to 3, so that 2 always means "unknown").
"""

from __future__ import annotations

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
    "list": ("harness.list_cmd", "list_cmd"),
    "selftest": ("harness.selftest_cmd", "selftest"),
}


# -- the registry: squall's backends by name (and what each can do); its
# databases, workloads, nemeses and checkers come from entry points
# (harness/plugins.py: squall's own are registered in pyproject.toml, like a
# plugin's). Factories import lazily so `squall check` pays for none of them.


def _local_backend(options: dict):
    from harness.backends.local import LocalBackend

    return LocalBackend()


def _docker_backend(options: dict):
    from harness.backends import docker

    return docker.make(options)


def _ssh_backend(options: dict):
    from harness.backends import ssh

    return ssh.make(options)


# The faults squall's own nemesis performs, and those each backend can (the
# local backend all of them). A plugin's fault is asked for by name, on any
# backend; its nemesis checks the cluster's abilities in setup.
BUILTIN_FAULTS = ("partition", "pause", "kill", "packet", "clock", "disk")
BACKEND_FAULTS = {"docker": ("partition", "pause", "kill", "packet", "disk"), "ssh": ("partition", "pause", "kill")}
# Targeted sequences --nemesis may name (nemesis/schedule.py SEQUENCE_FAULTS): name -> the faults each uses.
NEMESIS_SEQUENCES = {
    "lagging-follower": ("packet", "kill"),
    "kill-leader-in-partition": ("partition", "kill"),
    "pause-majority": ("pause",),
}


def _check_failpoint(spec: str):
    from node import failpoints  # the node's own list of points (the composition root may name node/)

    return failpoints.parse_spec(spec)


def _registry():
    from harness.plugins import discover
    from harness.registry import from_plugins

    return from_plugins(
        discover(),
        backends={"local": _local_backend, "docker": _docker_backend, "ssh": _ssh_backend},
        backend_faults=BACKEND_FAULTS,
        builtin_faults=BUILTIN_FAULTS,
        nemesis_sequences=NEMESIS_SEQUENCES,
        # test-only failpoints (the node's --failpoint, node/failpoints.py), passed by the db's prepare
        failpoint_dbs=("squall",),
        check_failpoint=_check_failpoint,
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
