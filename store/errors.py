"""The one exception type the store raises for bad stores and bad input."""


class StoreError(Exception):
    """A store or an input to it is missing, damaged, or not what was expected.

    The message is one line that names the store or input and the problem.
    """
