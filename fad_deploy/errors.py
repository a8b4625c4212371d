"""User-facing errors: the CLIs print these as one line and exit with code 2."""


class FadError(Exception):
    """A mistake in the user's input (bad file, bad argument, missing model).

    The message must name the offending file or value and the problem.
    """
