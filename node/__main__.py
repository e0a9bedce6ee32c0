"""`python -m node --data-dir DIR ...`: the same as `squall node ...`."""

from __future__ import annotations

import sys

import click

from node.cli import node_command


def main() -> None:
    try:
        node_command.main(prog_name="python -m node", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(3)  # the project's exit code for bad input / failed setup


if __name__ == "__main__":
    main()
