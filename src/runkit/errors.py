"""User-facing errors and the CLI convention: one clear line, non-zero exit, no traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """An error the user can fix (bad setting, unknown id, missing or malformed file); the message says how."""


class CheckpointError(UserError):
    """A checkpoint is missing, truncated, tampered with or from an incompatible run."""


MEMORY_HINTS = {
    "spiral": "lower the batch size, the number of concurrent games or max_new_tokens",
    "tm": "lower --batch-size, the model's --width / --depth or the samples drawn (--n)",
}


def run_cli(fn: Callable[[], int | None], prog: str) -> int:
    """Call `fn`; turn UserError, memory errors and Ctrl-C into one line on stderr and an exit code."""
    try:
        return int(fn() or 0)
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        hint = MEMORY_HINTS.get(prog, "lower the batch size")
        print(f"{prog}: error: out of memory; {hint} (see --help)", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; saved work is intact (runs resume with --resume)", file=sys.stderr)
        return 130
