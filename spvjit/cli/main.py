"""`spvjit` entry point: a small argparse dispatcher.

Each subcommand lives in its own module in this package and provides
`add_parser(subparsers)` (which registers its parser) and `run(args) -> int`.
Add a module's name to COMMANDS to expose it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

COMMANDS = ("devices", "run", "bench", "tune")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spvjit", description="A Triton-like kernel compiler for Vulkan.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"spvjit.cli.{name}")
        sub_parser = module.add_parser(sub)
        sub_parser.set_defaults(run=module.run)
    def error(message: str):
        # one line, like the subcommands: `spvjit: error: ...`, exit 2
        print(f"spvjit: error: {message} (see spvjit --help)", file=sys.stderr)
        sys.exit(2)

    parser.error = error
    return parser


def main(argv=None) -> int:
    from .interrupt import quiet_interrupts
    quiet_interrupts()  # Ctrl-C while modules import: one line, exit 130 (also set by spvjit/__init__)
    args = build_parser().parse_args(argv)  # bad usage exits 2 from argparse
    from spvjit.errors import DeviceError, LaunchError  # LaunchError covers SettingError
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on: KeyboardInterrupt
    try:
        return int(args.run(args) or 0)
    except (DeviceError, LaunchError) as e:
        # One line, no traceback: these are environment problems (no driver, a bad
        # SPVJIT_*/LP_* variable), not bugs.
        print(f"spvjit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spvjit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `spvjit devices | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
