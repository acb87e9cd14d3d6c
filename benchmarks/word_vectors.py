"""What pretrained word vectors are worth to the single CNN-BiLSTM (issue: a stronger single model).

    python benchmarks/word_vectors.py [--datasets shipped DIR:10 ...] [--seed 42]

For each set (the forms of benchmarks/run.py: `shipped`, `DIR`, `DIR:N` few-shot), the jobs.py
pipeline trains the single model alone (`--no-ensemble`, tuning included) twice on the same
rows: `--word-vectors scratch` (the seed's embedding, learned from the training split) and
`--word-vectors pretrained` (all-MiniLM-L6-v2's word-piece embeddings, averaged per word, then
trained on); the word + char TF-IDF LinearSVC peer (C on validation) is trained on the same rows
for scale. Test accuracy over in-scope rows, train wall time, warm single-message p50.
Prints a markdown table and writes benchmarks/results/word_vectors.json.
"""
import argparse
import tempfile
from pathlib import Path

from common import ROOT, SHARED, report
from run import prepare_files, run_sparse_peer, scores, speed, timed

from intentkit import artifacts
from intentkit.data.intents import load_intents
from intentkit.serving.predictor import Predictor
from intentkit.training.config import TrainConfig
from intentkit.training.pipeline import split_first, train

DATASETS = ["shipped", f"{SHARED / 'banking77'}:10", f"{SHARED / 'clinc150'}:10"]
VARIANTS = ("scratch", "pretrained")


def single_model(files, variant, work, seed):
    config = TrainConfig(**files, out=str(work / variant), seed=seed, ensemble=False,
                         word_vectors=variant)
    _, seconds = timed(lambda: train(config))
    predictor = Predictor(work / variant / artifacts.MODEL_FILE,
                          work / variant / artifacts.PREPROCESSOR_FILE, use_ensemble=False)
    return config, predictor, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=DATASETS, metavar="SET")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    results, rows = {}, []
    for spec in args.datasets:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            name, files, test_texts, test_labels = prepare_files(spec, work, False, 0)
            systems = {}
            for variant in VARIANTS:
                config, predictor, seconds = single_model(files, variant, work, args.seed)
                split = split_first(load_intents(config.data), config)
                texts = test_texts or split.test_texts
                labels = test_labels or split.test_labels
                systems[f"CNN-BiLSTM, {variant} word vectors"] = {
                    **scores(predictor.predict_proba(texts), labels, predictor.labels,
                             predictor.threshold),
                    "train_seconds": seconds,
                    **speed(predictor.predict, predictor.predict_batch, texts)}
            svc = "TF-IDF words + chars + LinearSVC"
            systems[svc] = run_sparse_peer(svc, split, texts, labels, predictor.labels)
        results[name] = systems
        for system, r in systems.items():
            rows.append([name, system, f"{r['accuracy'] * 100:.2f} %", f"{r['macro_f1']:.4f}",
                         f"{r['train_seconds']:.0f} s", f"{r['latency_p50_ms']:.2f}"])
        print(f"{name}: " + ", ".join(f"{s} {r['accuracy']:.4f}" for s, r in systems.items()),
              flush=True)
    report(["set", "system", "accuracy", "macro-F1", "train time", "p50 ms"], rows,
           {"seed": args.seed, "results": results},
           ROOT / "benchmarks" / "results" / "word_vectors.json")


if __name__ == "__main__":
    main()
