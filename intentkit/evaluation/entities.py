"""Entity scores: exact span and type (seqeval's and the ATIS/SNIPS papers' convention).

An entity counts as right only when its start, end and type all match a true one; precision,
recall and F1 are given per type and micro-averaged over all entities. A message is wholly right
when its intent is right and its entities are exactly the true ones.
"""
import csv
import json
from pathlib import Path

from .report import csv_cell


def _keys(row):
    """{(start, end, entity)} of a row of annotations.Span or answer dicts."""
    return {(e["start"], e["end"], e["entity"]) if isinstance(e, dict) else
            (e.start, e.end, e.entity) for e in row}


def _prf(true_positive, predicted, actual):
    precision = true_positive / predicted if predicted else 0.0
    recall = true_positive / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "support": actual}


def entity_scores(true_rows, predicted_rows):
    """{"micro": {precision, recall, f1, support}, "per_type": {type: {...}}}."""
    counts = {}  # type -> [true positives, predicted, actual]
    for true_row, predicted_row in zip(true_rows, predicted_rows, strict=True):
        true, predicted = _keys(true_row), _keys(predicted_row)
        for key in true | predicted:
            count = counts.setdefault(key[2], [0, 0, 0])
            count[0] += key in true and key in predicted
            count[1] += key in predicted
            count[2] += key in true
    totals = [sum(c[i] for c in counts.values()) for i in range(3)]
    return {"micro": _prf(*totals),
            "per_type": {name: _prf(*count) for name, count in sorted(counts.items())}}


def micro_f1(true_rows, predicted_rows):
    """The entity micro-F1 alone (a labeller's validation score)."""
    return entity_scores(true_rows, predicted_rows)["micro"]["f1"]


def whole_message_accuracy(true_labels, predicted_labels, true_rows, predicted_rows):
    """Share of messages whose intent and entities (span and type) are all right."""
    if not true_labels:
        return 0.0
    right = sum(t == p and _keys(ts) == _keys(ps) for t, p, ts, ps in
                zip(true_labels, predicted_labels, true_rows, predicted_rows, strict=True))
    return round(right / len(true_labels), 4)


def describe(entities):
    """`type=value[start:end]` of each entity of a row (Span or answer dicts), for errors.csv."""
    return "; ".join(f"{e['entity']}={e['value']}[{e['start']}:{e['end']}]" if isinstance(e, dict)
                     else f"{e.entity}={e.value}[{e.start}:{e.end}]" for e in entities)


def write_errors_with_entities(path, texts, true_labels, predicted_labels, confidences,
                               true_rows, predicted_rows):
    """errors.csv of a run with entities: every test message whose intent or entities are
    wrong, with the true and the predicted entities beside the intents (wrong intents first,
    the most confidently wrong first)."""
    rows = [(text, true, predicted, confidence, describe(sorted(
        true_row, key=lambda s: s.start if not isinstance(s, dict) else s["start"])),
             describe(predicted_row))
            for text, true, predicted, confidence, true_row, predicted_row in zip(
                texts, true_labels, predicted_labels, confidences, true_rows, predicted_rows,
                strict=True)
            if true != predicted or _keys(true_row) != _keys(predicted_row)]
    rows.sort(key=lambda row: (row[1] == row[2], -row[3]))
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "true", "predicted", "confidence", "true_entities",
                         "predicted_entities"])
        for text, true, predicted, confidence, true_entities, predicted_entities in rows:
            writer.writerow(map(csv_cell, [text, true, predicted, f"{confidence:.4f}",
                                           true_entities, predicted_entities]))


def summary_lines(metrics):
    """The report's Markdown lines of entity metrics (see add_entity_report)."""
    micro = metrics["micro"]
    lines = ["", "## Entities (exact span and type)", "",
             f"Micro: precision {micro['precision']:.4f}, recall {micro['recall']:.4f}, "
             f"F1 {micro['f1']:.4f} ({micro['support']} entities). Messages whose intent and "
             f"entities are all right: {metrics['whole_message_accuracy']:.4f} of "
             f"{metrics['n']}.", "", "| type | precision | recall | F1 | support |",
             "|---|---|---|---|---|"]
    lines += [f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | "
              f"{m['support']} |" for name, m in metrics["per_type"].items()]
    return lines


def add_entity_report(report_dir, texts, true_labels, predicted_labels, confidences, true_rows,
                      predicted_rows):
    """Add the entity scores to a written report (report.write_report): "entities" in
    metrics.json (micro and per type P/R/F1, whole-message accuracy), a section of summary.md,
    and errors.csv rewritten with the entity mistakes. Returns the "entities" metrics."""
    report_dir = Path(report_dir)
    scores = entity_scores(true_rows, predicted_rows)
    metrics = {"micro": scores["micro"], "per_type": scores["per_type"],
               "whole_message_accuracy": whole_message_accuracy(
                   list(true_labels), list(predicted_labels), true_rows, predicted_rows),
               "n": len(texts)}
    path = report_dir / "metrics.json"
    document = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    path.write_text(json.dumps({**document, "entities": metrics}, indent=2))
    summary = report_dir / "summary.md"
    existing = summary.read_text(encoding="utf-8") if summary.exists() else ""
    summary.write_text(existing + "\n".join(summary_lines(metrics)) + "\n", encoding="utf-8")
    write_errors_with_entities(report_dir / "errors.csv", texts, true_labels, predicted_labels,
                               confidences, true_rows, predicted_rows)
    return metrics
