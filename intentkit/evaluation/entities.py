"""Entity scores: exact span and type (seqeval's and the ATIS/SNIPS papers' convention).

An entity counts as right only when its start, end and type all match a true one; precision,
recall and F1 are given per type and micro-averaged over all entities. A message is wholly right
when its intent is right and its entities are exactly the true ones.
"""


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
