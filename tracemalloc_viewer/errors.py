"""The one exception the viewer raises for bad input."""


class ViewerInputError(Exception):
    """Input the viewer cannot use: a file that is not a capture, a truncated one, an empty series,
    a bad option value. The message is one line that names the file (when there is one) and the
    fault; the command line prints it and exits with status 2."""
