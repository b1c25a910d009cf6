"""mavera: a command-line client for the Mavera Responses API."""

__version__ = "0.1.0"
