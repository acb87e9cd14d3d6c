"""The language and nonsense guard: foreign messages caught, in-language messages wrongly caught,
and the detector's speed.

Foreign: the example sentences spaCy ships for 65 languages (benchmarks/data/
foreign_sentences.json, extracted from its wheel: nothing is downloaded when this runs).
In-language: the shipped data's test split (the pipeline's split, seed 42) and CLINC150's test
rows (English questions of 150 other domains, /work/shared/datasets/clinc150).

A message is caught by the language rule (`fallback_reason` "language") or by the no-known-word
rule ("no_known_words"); both are reported, with the run's vocabulary deciding which words are
known. Speed: Lingua's detection alone, per message, over the in-language messages.

    python benchmarks/language_guard.py --model-dir filesTech
"""
import argparse
import json
import os
import statistics
import time
from datetime import date
from pathlib import Path

from common import ROOT, SHARED, report

from intentkit import artifacts
from intentkit.data.intents import load_examples, load_intents, split_data
from intentkit.serving.predictor import Predictor
from intentkit.text import language

FOREIGN = Path(__file__).resolve().parent / "data" / "foreign_sentences.json"


def rebuild_foreign(wheel, out=FOREIGN):
    """benchmarks/data/foreign_sentences.json from a spaCy wheel's example sentences."""
    import ast
    import zipfile
    sentences = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            parts = name.split("/")
            if len(parts) == 4 and parts[:2] == ["spacy", "lang"] and parts[3] == "examples.py" \
                    and parts[2] not in ("en", "xx"):
                for node in ast.parse(archive.read(name).decode("utf-8")).body:
                    if isinstance(node, ast.Assign) and any(
                            getattr(t, "id", "") == "sentences" for t in node.targets):
                        sentences[parts[2]] = [s.strip() for s in ast.literal_eval(node.value)
                                               if s.strip()]
    out.write_text(json.dumps({"source": f"{Path(wheel).name}: spacy/lang/<code>/examples.py",
                               "sentences": sentences}, ensure_ascii=False, indent=1),
                   encoding="utf-8")


def caught(results):
    """Shares of results sent to the fallback by the language rule, and by either guard rule."""
    count = max(len(results), 1)
    by_language = sum(r["fallback_reason"] == "language" for r in results)
    by_either = sum(r["fallback_reason"] in ("language", "no_known_words") for r in results)
    return round(by_language / count, 4), round(by_either / count, 4)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=str(ROOT / artifacts.DEFAULT_DIR))
    parser.add_argument("--rebuild-foreign", metavar="SPACY_WHEEL",
                        help="rebuild the foreign sentences from a spaCy wheel first")
    parser.add_argument("--out", default=str(
        ROOT / "docs" / "benchmarks" / f"language_guard-{date.today()}.json"))
    args = parser.parse_args()
    if args.rebuild_foreign:
        rebuild_foreign(args.rebuild_foreign)
    model_dir = Path(args.model_dir)
    predictor = Predictor(model_dir / artifacts.MODEL_FILE, model_dir / artifacts.PREPROCESSOR_FILE,
                          runtime="numpy", cache_size=0)
    if predictor.language_detector is None:
        raise SystemExit(f"{model_dir}: the guard is off (no recorded language, or "
                         f"{language.INSTALL_HINT})")
    foreign = json.loads(FOREIGN.read_text(encoding="utf-8"))["sentences"]
    shipped = load_intents(ROOT / "filesTech" / "final.json")
    in_language = {
        "shipped test split": split_data(shipped.texts, shipped.labels).test_texts,
        "CLINC150 test": load_examples(SHARED / "clinc150" / "test.json")[0]}
    foreign_texts = [text for sentences in foreign.values() for text in sentences]
    foreign_results = predictor.predict_batch(foreign_texts)
    missed = [(text, r["language"]) for text, r in zip(foreign_texts, foreign_results)
              if r["fallback_reason"] not in ("language", "no_known_words")]
    rows, payload = [], {"date": str(date.today()), "model": str(model_dir),
                         "run_language": predictor.language, "load": os.getloadavg(),
                         "rule": {"foreign_confidence": language.FOREIGN_CONFIDENCE,
                                  "min_words": language.MIN_WORDS,
                                  "max_known_share": language.MAX_KNOWN_SHARE},
                         "sets": {}}
    by_language, by_either = caught(foreign_results)
    rows.append(["foreign (spaCy examples, 65 languages)", len(foreign_texts),
                 f"{by_language:.1%}", f"{by_either:.1%}"])
    payload["sets"]["foreign"] = {"messages": len(foreign_texts), "languages": len(foreign),
                                  "caught_by_language": by_language,
                                  "caught_by_either": by_either, "missed": missed}
    timings = []
    for name, texts in in_language.items():
        results = predictor.predict_batch(texts)
        by_language, by_either = caught(results)
        rows.append([f"in-language: {name}", len(texts), f"{by_language:.2%}", f"{by_either:.2%}"])
        payload["sets"][name] = {
            "messages": len(texts), "wrongly_caught_by_language": by_language,
            "wrongly_caught_by_either": by_either,
            "examples": [(t, r["fallback_reason"], r["language"]) for t, r in zip(texts, results)
                         if r["fallback_reason"] in ("language", "no_known_words")][:20]}
        for text in texts[:500]:
            started = time.perf_counter()
            predictor.language_detector.detect(text)
            timings.append(time.perf_counter() - started)
    timings.sort()
    payload["detection_ms"] = {"messages": len(timings),
                               "p50": round(statistics.median(timings) * 1000, 4),
                               "p95": round(timings[int(0.95 * len(timings))] * 1000, 4)}
    speed = payload["detection_ms"]
    rows.append(["detection per message (ms)", len(timings), f"p50 {speed['p50']}",
                 f"p95 {speed['p95']}"])
    report(["set", "messages", "caught: language rule", "caught: language or no known word"],
           rows, payload, args.out)


if __name__ == "__main__":
    main()
