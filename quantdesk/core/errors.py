"""The one exception type the CLI and GUI turn into a sentence for the user."""


class QuantDeskError(Exception):
    """An expected failure with a message fit to show a person as-is."""
