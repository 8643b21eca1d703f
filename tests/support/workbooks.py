"""What the workbook tests share: LibreOffice's reference values and how to compare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parents[1] / "fixtures" / "workbooks"
REFERENCE: dict[str, list[dict[str, Any]]] = json.loads(
    (FIXTURES / "reference.json").read_text())["workbooks"]


def same(got: Any, want: Any) -> bool:
    """Equal as Excel and LibreOffice see values: numbers to 15 significant digits."""
    numbers = (int, float)
    if isinstance(got, numbers) and isinstance(want, numbers) \
            and not isinstance(got, bool) and not isinstance(want, bool):
        return float(f"{got:.15g}") == float(f"{want:.15g}")
    return bool(got == want)
