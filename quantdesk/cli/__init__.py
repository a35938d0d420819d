"""``quantdesk <verb>``: the command line over the same core as the window (entry: ``main``)."""

from quantdesk.cli.main import gui_main, main

__all__ = ["main", "gui_main"]
