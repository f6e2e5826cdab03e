"""One exception type for bad user input, so the workflow can report it in one clear line."""


class InputError(ValueError):
    """Bad user input: the message names the file, row or key, what is wrong and how to fix it."""
