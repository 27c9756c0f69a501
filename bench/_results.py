"""What every benchmark does with its result: print the JSON document and, given ``--out``,
write it there (folders created), so results land in ``bench/results/`` the same way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit(doc: Any, out: Path | None, *, indent: int = 2) -> str:
    text = json.dumps(doc, indent=indent)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    return text
