"""Command line: click commands, terminal UI."""
