"""Failpoints for crash tests: a real process death at a named point, armed by a file.

``WAVELINE_FAULT_FILE`` names a file holding a point name. When the process reaches that
point it deletes the file (so the restarted process runs through) and exits at once with
``os._exit`` — no cleanup, no offset commit, exactly like a kill. Unset in production.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

EXIT_CODE = 86


def failpoint(name: str) -> None:
    path = os.environ.get("WAVELINE_FAULT_FILE")
    if not path:
        return
    armed = Path(path)
    try:
        if armed.read_text().strip() != name:
            return
    except FileNotFoundError:
        return
    armed.unlink(missing_ok=True)
    sys.stderr.write(f"failpoint {name}: exiting\n")
    sys.stderr.flush()
    os._exit(EXIT_CODE)
