"""What commands print: one JSON document on stdout with ``--json``, else lines for a person."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(document: Any) -> None:
    """The command's one JSON document, on stdout."""
    sys.stdout.write(json.dumps(document, indent=1) + "\n")


def error_document(area: str, message: str, exit_code: int) -> dict[str, Any]:
    """What ``--json`` prints on stdout when a command fails (schemas/error.json)."""
    return {"error": {"area": area, "message": message, "exit_code": exit_code}}
