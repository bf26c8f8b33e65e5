"""One exception type for bad input, so the CLI and the plugin can report it as a single line."""


class AcceptanceError(Exception):
    """Bad or unusable input: the message names the file, line or field at fault."""
