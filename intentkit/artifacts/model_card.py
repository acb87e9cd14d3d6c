"""`model_card.md`: what a published model is, how it was made and how well it did.

Written into the staging directory from the same facts as the manifest, so it is published
(and checksummed) atomically with the model it describes.
"""
from .._version import __version__
from . import CONFIG_FILE, versions

LIMITATIONS = """\
- Intended use: routing messages of a chatbot to one of the labels below. Each message is
  classified on its own, without the conversation around it.
- Messages outside these labels still get the closest one; the fallback threshold catches part
  of them (`"intent": "fallback"`), not all.
- The test metrics hold for messages like the test split (carved from the data file unless
  `test_data` in the options names another file). The CNN-BiLSTM and CNN map words they never saw
  to an unknown-word id; the pretrained member (if any) reads all-MiniLM-L6-v2 embeddings, which
  cover general English vocabulary.
- English text processing (NLTK tokenizer, WordNet lemmas; MiniLM's WordPiece, uncased)."""


def markdown_table(header, rows):
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    return "\n".join(lines + [f"| {' | '.join(map(str, row))} |" for row in rows])


def render(details):
    """The card's Markdown from the manifest details of a run."""
    data, splits = details["data"], details["splits"]
    metrics = [(name, f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}",
                f"{m['log_loss']:.3f}" if "log_loss" in m else "–", m["n"])
               for name, m in details["metrics"].items()]
    reference = details["reference"]
    metrics.append((f"reference: {reference['name']}", f"{reference['accuracy']:.4f}",
                    f"{reference['macro_f1']:.4f}", "–", metrics[0][-1]))
    finetune = details.get("finetune")
    how = (f"fine-tuned from the previous model in {finetune['seconds']:.0f} s (the last full "
           f"run took {finetune['full_run_seconds']:.0f} s)" if finetune
           else f"full run in {details['training_seconds']:.0f} s")
    sections = [
        "# Model card: intentkit intent classifier", "",
        (f"Trained {details['created']} with intentkit "
         f"{__version__} ({how})."), "",
        f"Command line: `{details['command_line']}` (effective options: `{CONFIG_FILE}` beside "
        "this file).",
        "",
        "## Data", "",
        f"`{data['path']}`: {data['patterns']} distinct patterns, SHA-256 `{data['sha256']}`.",
        *conflict_lines(data.get("conflicts")),
        *(f"{name}: `{data[name]['path']}`, SHA-256 `{data[name]['sha256']}`."
          for name in ("val_data", "test_data", "feedback") if name in data),
        "", markdown_table(("split", "patterns"), [
            ("train", splits["train"]),
            ("train after augmentation", splits["train_after_augmentation"]),
            ("validation", splits["val"]), ("test (held out)", splits["test"])]), "",
        f"Labels ({len(details['labels'])}): {', '.join(details['labels'])}", "",
        "## Model", "",
        f"CNN-BiLSTM, configuration {details['best_config'].get('name', '?')!r}; "
        + (f"ensemble weights {details['ensemble_weights']}; member inputs "
           f"{details['member_inputs']}"
           + (f" (`sentence_embedding`: {details['encoder']})." if details.get("encoder")
              else ".")
           if details.get("ensemble_weights") else "no ensemble."), "",
        f"Default answer (callers that do not choose): **{details['default_model']}**, the "
        "model with the best validation accuracy.", "",
        "## Test metrics", "",
        markdown_table(("model", "accuracy", "macro-F1", "log-loss", "test patterns"),
                       metrics), "",
        *entity_lines(details.get("entities")),
        "## Fallback thresholds", "",
        markdown_table(("model", "threshold"), [(name, f"{value:.3f}") for name, value in
                                                details["fallback_thresholds"].items()]), "",
        "Below its threshold, an answer becomes `fallback` (chosen on the validation split).",
        "", "## Versions", "",
        markdown_table(("package", "version"), sorted(versions().items())), "",
        "## Intended use and limitations", "", LIMITATIONS, ""]
    return "\n".join(sections)


def entity_lines(entities):
    """The card's entity section (runs trained with entities; intentkit.training.entities)."""
    if not entities:
        return []
    test = entities["test"]
    micro = test["micro"]
    chosen = (f"labeller **{entities['labeller']}**, chosen by {entities['chosen_by']} among "
              + ", ".join(f"{c['labeller']} c1={c['c1']} c2={c['c2']} "
                          f"({c['val_micro_f1']:.4f})" for c in entities["candidates"])
              if entities["labeller"] else "no labeller (no annotated training row)")
    return ["## Entities", "",
            f"Types: {', '.join(entities['types']) or 'none'}; {chosen}; lookup tables, regexes "
            f"and synonyms of the data file beside it; {entities['rules']} intent rule(s).", "",
            f"Test (exact span and type): micro precision {micro['precision']:.4f}, recall "
            f"{micro['recall']:.4f}, F1 {micro['f1']:.4f} over {micro['support']} entities; "
            f"intent and all entities right in {test['whole_message_accuracy']:.4f} of "
            f"{test['n']} messages.", "",
            markdown_table(("type", "precision", "recall", "F1", "support"), [
                (name, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}",
                 m["support"]) for name, m in test["per_type"].items()]), ""]


def conflict_lines(conflicts):
    """What became of the texts labelled with several intents (older runs did not record it)."""
    if not conflicts or not conflicts["texts"]:
        return []
    what = ("dropped from all their intents" if conflicts["on_conflict"] == "drop"
            else "kept in their first intent only")
    shown = "; ".join(f"`{c['text']}` ({', '.join(c['intents'])})"
                      for c in conflicts["examples"])
    return ["", f"Conflicts: {conflicts['texts']} text(s) were patterns of several intents, "
            f"{what} (`on_conflict: {conflicts['on_conflict']}`): {shown}"
            f"{' ...' if conflicts['texts'] > len(conflicts['examples']) else ''}."]


def write_model_card(path, details):
    path.write_text(render(details), encoding="utf-8")
