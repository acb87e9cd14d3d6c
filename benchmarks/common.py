"""What every benchmark does at the end: print a markdown table and save the figures as JSON."""
import json
from pathlib import Path


def report(header, rows, payload, out):
    """Print `rows` (lists of cells) under `header` as a markdown table; write `payload` to out."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
