"""One way for every command line to fail: a single line naming what is wrong, exit status 2;
`--debug` re-raises with the traceback instead."""
from __future__ import annotations

import sys


def run_cli(main, prog: str, argv=None) -> int:
    """Call main(argv without --debug); ValueError, OSError, RuntimeError and KeyError become one
    line on stderr and exit status 2 (ValueErrors are our own messages: no hint appended)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        main([a for a in argv if a != "--debug"])
    except (ValueError, OSError, RuntimeError, KeyError) as e:
        if debug:
            raise
        text = f"missing key {e}" if isinstance(e, KeyError) else str(e)
        hint = "" if isinstance(e, ValueError) else f" ({type(e).__name__}; --debug for the traceback)"
        print(f"{prog}: error: {text}{hint}", file=sys.stderr)
        return 2
    return 0
