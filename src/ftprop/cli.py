"""The ``ftprop`` command line: thin wrappers that parse, build objects and call the library."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def _cmd_losses(args: argparse.Namespace) -> int:
    from .losses import LOSSES

    for name, loss in LOSSES.items():
        alias = f" (alias {', '.join(loss.aliases)})" if loss.aliases else ""
        print(f"{name:16s} {loss.formula}{alias}\n{'':16s} {loss.note}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftprop", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ftprop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("losses", help="list the layer losses")
    p.set_defaults(func=_cmd_losses)

    from .exact.cli import add_solve_parser

    add_solve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
