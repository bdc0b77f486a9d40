"""python -m load_tests {run,batching,reference,scaleout,all,summary,live} ... (see load_tests/README.md)."""
from __future__ import annotations

import argparse

from .cli import COMMANDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load_tests", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, _run) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=_run.__doc__))
    args = parser.parse_args(argv)
    _add, run = COMMANDS[args.command]
    return run(args) or 0


if __name__ == "__main__":
    raise SystemExit(main())
