"""Ctrl-C before the command has started: one line and exit 130, not an import traceback.

The console script imports ``spvjit`` (numpy, the compiler, ...: about 0.3 s) before
``main`` runs, and Python's default handler turns a Ctrl-C in that window into a
KeyboardInterrupt traceback. ``spvjit/__init__`` calls :func:`quiet_interrupts` first
thing when the process is the ``spvjit`` command; ``main`` puts the default handler back
once the subcommand is about to run, so generation can still stop cleanly on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import sys


def _exit_quietly(signum, frame):
    os.write(2, b"spvjit: interrupted\n")
    os._exit(130)


def quiet_interrupts() -> None:
    try:
        signal.signal(signal.SIGINT, _exit_quietly)
    except ValueError:  # not the main thread: leave signals alone
        pass


def is_spvjit_command() -> bool:
    """Whether this process was started as the ``spvjit`` console script."""
    return bool(sys.argv) and os.path.basename(sys.argv[0]) in ("spvjit", "spvjit.exe")
