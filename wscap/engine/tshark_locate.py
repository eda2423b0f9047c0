"""Where tshark is, found the way pyshark finds it.

pyshark already knows where Wireshark puts tshark on each platform (its config.ini's
`tshark_path`, PATH, Program Files on Windows, the app bundle on macOS), so wscap asks it
instead of keeping a list of its own. Asked on every call: PATH may change between calls.
"""
from __future__ import annotations

import shutil


def tshark_path() -> str | None:
    """The tshark executable to run, or None when there is none."""
    try:
        from pyshark.tshark.tshark import TSharkNotFoundException, get_process_path
    except ImportError:          # pyshark is a dependency; a broken install still finds PATH's
        return shutil.which("tshark")
    try:
        return str(get_process_path())
    except TSharkNotFoundException:
        return None
