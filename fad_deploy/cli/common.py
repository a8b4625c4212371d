"""What every CLI shares: user errors become one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import functools
import sys

from ..errors import FadError

EXIT_USER_ERROR = 2


def user_errors(main):
    """Run ``main``; a :class:`FadError` prints ``<prog>: error: <message>`` and exits 2."""

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except FadError as e:
            prog = main.__module__.rsplit(".", 1)[-1]
            print(f"fad-{prog}: error: {e}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper


class OneLineParser(argparse.ArgumentParser):
    """Argument mistakes as one line (``prog: error: ...``) and exit code 2, like every other user error."""

    def error(self, message):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\n")
