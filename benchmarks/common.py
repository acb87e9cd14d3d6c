"""What every benchmark does at the end: print a markdown table and save the figures as JSON."""
import json
from pathlib import Path

from intentkit.model_card import markdown_table


def report(header, rows, payload, out):
    """Print `rows` (lists of cells) under `header` as a markdown table; write `payload` to out.
    Returns the table."""
    table = markdown_table(header, rows)
    print(table)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    return table
