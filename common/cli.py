"""The one way every entry point ends on bad input: a single line naming the file, the key and what was expected.

    if __name__ == "__main__":
        cli(main)            # main(argv) -> exit status (an int; anything else, e.g. None or rows, = 0)

A config, data or result-file error (ConfigError, DataError, any ValueError, a missing file, a non-finite loss) is
printed as `error: <message>` on stderr and the process exits with status 2, instead of the same message at the
bottom of a long traceback. `--debug` on the command line (or JETFM_DEBUG=1) keeps the traceback.
"""
from __future__ import annotations

import os
import sys

DEBUG_ENV = "JETFM_DEBUG"
USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)  # ConfigError and DataError are ValueErrors


def debug_enabled(argv) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def cli(main, argv=None) -> None:
    """Run main(argv without --debug) and exit with its status; bad input ends in one line (module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_enabled(argv)
    try:
        status = main([a for a in argv if a != "--debug"])
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"error: {e}  (rerun with --debug for the traceback)", file=sys.stderr, flush=True)
        sys.exit(2)
    sys.exit(status if isinstance(status, int) and not isinstance(status, bool) else 0)
