"""The commands, grouped by kind; `cli.py` registers them on the app in help order."""
