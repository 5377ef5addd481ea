"""The one way every entry point ends on bad input: a single line naming the file, the key and what was expected.

    if __name__ == "__main__":
        cli(main)            # main(argv) -> exit status (an int; anything else, e.g. None or rows, = 0)

A config, data or result-file error (ConfigError, DataError, any ValueError, a missing file, a non-finite loss, a
full disk) is printed as `error: <message>` on stderr and the process exits with status 2, instead of the same message at the
bottom of a long traceback. Ctrl-C ends in one line ("interrupted; rerun the same command to resume") and
status 130; output piped into a reader that closed early (`| head`) ends quietly. `--debug` on the command line (or JETFM_DEBUG=1) keeps the traceback.
"""
from __future__ import annotations

import os
import sys

from common.atomic import NoSpaceError

DEBUG_ENV = "JETFM_DEBUG"
USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError,  # ConfigError and DataError are ValueErrors
               NoSpaceError)                                         # a full disk, naming the file
INTERRUPTED = 130   # the shell's status for a process ended by Ctrl-C (128 + SIGINT)


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
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted; rerun the same command to resume (a run continues from its last checkpoint)",
              file=sys.stderr, flush=True)
        sys.exit(INTERRUPTED)
    except BrokenPipeError:   # output piped into `head` that closed early: nothing wrong, nothing more to print
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        sys.exit(0)
    sys.exit(status if isinstance(status, int) and not isinstance(status, bool) else 0)
