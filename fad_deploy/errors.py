"""User-facing errors: the CLIs print these as one line and exit with code 2."""
import difflib


class FadError(Exception):
    """A mistake in the user's input (bad file, bad argument, missing model).

    The message must name the offending file or value and the problem.
    """


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, the noun plural (``plural``, else noun + "s") unless n is 1: "1 step", "3 steps"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def fold(names, given: str | None = None, limit: int = 8) -> str:
    """``names`` for a one-line message: all of them when there are few, else the first
    ``limit`` and how many more; those closest to the mistaken ``given`` come first."""
    names = list(names)
    if given is not None:
        close = difflib.get_close_matches(given, names, n=limit, cutoff=0.5)
        names = close + [n for n in names if n not in close]
    if len(names) <= limit + 2:  # folding fewer than 3 would not shorten the line
        return ", ".join(names)
    return f"{', '.join(names[:limit])} and {len(names) - limit} more"
