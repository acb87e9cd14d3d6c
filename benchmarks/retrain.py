"""The retrain loop on the shipped data, timed as a user meets it (issue 25): `python jobs.py` of
the code before (a checkout given by --before) and of this checkout, one after the other in one
session on one machine; then, into this checkout's output, a second `python jobs.py` after 5
patterns were edited (its embedding cache warm), and `intentkit train --finetune` after one new
intent of 10 patterns was added (timed to a published model that answers the new intent), and
after 20 patterns were edited. Each `--finetune` starts from a copy of this checkout's first run;
`new-intent-before` runs the `--finetune` of the --finetune-before checkout (default --before) on
the same copy and data.

Each step runs as its own process with a fresh --out (a temporary directory), and is recorded with
its wall seconds, the machine's load average before and after (the machine is shared: say so),
and figures from the published run's manifest. Writes JSON (see docs/benchmarks/runs.yaml).

    python benchmarks/retrain.py --before /tmp/main-checkout --out docs/benchmarks/retrain-DATE.json
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "filesTech" / "final.json"
NEW_INTENT = ("office_hours", [
    "when is the career office open", "what are your opening hours",
    "are you open on saturdays", "what time does the office close",
    "can I visit the office on monday", "office hours please",
    "is the career center open today", "until when are you open on friday",
    "what time do you open in the morning", "are you open during the holidays"])
NEW_INTENT_PROBES = ["what are the office opening hours", "is the office open on sunday"]


def load():
    return [round(value, 2) for value in os.getloadavg()]


def with_absolute_lookups(document):
    """`document` with its lookup files' paths made absolute (they are relative to the shipped
    file, and the edited copies are written elsewhere)."""
    types = {name: (dict(spec, lookup=str(SHIPPED.parent / spec["lookup"]))
                    if isinstance(spec, dict) and isinstance(spec.get("lookup"), str) else spec)
             for name, spec in (document.get("entities") or {}).items()}
    return {**document, "entities": types} if types else document


def edited(document, count):
    """`document` with `count` patterns of different intents reworded (a word added)."""
    intents = [dict(intent, patterns=list(intent["patterns"])) for intent in document["intents"]]
    for intent in intents[:count]:
        intent["patterns"][0] = intent["patterns"][0] + " please"
    return {**document, "intents": intents}


def with_new_intent(document):
    tag, patterns = NEW_INTENT
    return {**document, "intents": [*document["intents"], {
        "tag": tag, "patterns": patterns, "responses": ["We are open 9 to 17, Monday to Friday."]}]}


def step(name, tree, args, out):
    """One timed process in `tree` (its own code on PYTHONPATH)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = load()
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *map(str, args)], cwd=tree, env=env,
                            capture_output=True, text=True)
    seconds = round(time.perf_counter() - started, 1)
    record = {"step": name, "code": str(tree), "command": " ".join(map(str, args)),
              "exit": result.returncode, "wall_seconds": seconds, "load_before": before,
              "load_after": load()}
    if result.returncode != 0:
        record["stderr_tail"] = result.stderr[-2000:]
    manifest_path = Path(out) / "manifest.json"
    if result.returncode == 0 and manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        default = manifest.get("default_model")
        record.update({
            "training_seconds": manifest.get("training_seconds"),
            "phase_seconds": manifest.get("phase_seconds"),
            "default_model": default,
            "test_accuracy_default": (manifest.get("metrics") or {}).get(default, {})
            .get("accuracy"),
            "tuning": [{k: t.get(k) for k in ("name", "state", "epochs", "val_accuracy",
                                              "seconds")} for t in manifest.get("tuning") or []],
            "ensemble_weights": manifest.get("ensemble_weights"), "labels": len(
                manifest.get("labels") or [])})
    cache_lines = [line.split("embedding cache: ", 1)[1] for line in result.stderr.splitlines()
                   if "embedding cache: " in line]
    if cache_lines:
        record["embedding_cache"] = cache_lines
    print(json.dumps({k: v for k, v in record.items() if k != "stderr_tail"}), flush=True)
    return record


def finetune_copy(out, copy):
    """A copy of the published run in `out` (with its embedding cache) for one --finetune."""
    shutil.copytree(out, copy, symlinks=True)
    return copy


def answers(tree, out, texts):
    env = {**os.environ, "PYTHONPATH": str(tree)}
    found = []
    for text in texts:
        result = subprocess.run([sys.executable, "predict.py", text, "-m", str(out),
                                 "--runtime", "numpy"], cwd=tree, env=env, capture_output=True,
                                text=True)
        found.append(json.loads(result.stdout)["intent"] if result.returncode == 0 else None)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="a checkout of the code before (omit: "
                        "this checkout's steps only)")
    parser.add_argument("--finetune-before", type=Path, help="the checkout whose --finetune "
                        "new-intent-before runs (default: --before)")
    parser.add_argument("--steps", nargs="+", default=["after", "before", "edit5", "new-intent"],
                        choices=["after", "before", "edit5", "new-intent", "new-intent-before",
                                 "edit20"])
    parser.add_argument("--out", type=Path, required=True, help="the JSON results file")
    args = parser.parse_args()
    finetune_before = args.finetune_before or args.before
    document = with_absolute_lookups(json.loads(SHIPPED.read_text()))
    results = {"machine_cores": os.cpu_count(), "data": str(SHIPPED.relative_to(ROOT)),
               "steps": []}

    def save():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="retrain-") as scratch:
        work = Path(scratch)
        out = work / "after"
        for name in args.steps:
            if name == "after":
                results["steps"].append(step("after: python jobs.py", ROOT,
                                             ["jobs.py", "--out", out], out))
            elif name == "before" and args.before:
                before_out = work / "before"
                results["steps"].append(step("before: python jobs.py", args.before.resolve(),
                                             ["jobs.py", "--out", before_out], before_out))
            elif name == "edit5":
                data = work / "edit5.json"
                data.write_text(json.dumps(edited(document, 5)))
                results["steps"].append(step("after, 5 patterns edited: python jobs.py", ROOT,
                                             ["jobs.py", "--data", data, "--out", out], out))
            elif name == "new-intent" or (name == "new-intent-before" and finetune_before):
                code, tree = (("after", ROOT) if name == "new-intent"
                              else ("before", finetune_before.resolve()))
                data = work / "new-intent.json"
                data.write_text(json.dumps(with_new_intent(document)))
                copy = finetune_copy(out, work / name)
                record = step(f"{code}, one intent of 10 patterns added: intentkit train "
                              "--finetune", tree,
                              ["-m", "intentkit", "train", "--data", data, "--out", copy,
                               "--finetune"], copy)
                record["probes"] = dict(zip(NEW_INTENT_PROBES,
                                            answers(ROOT, copy, NEW_INTENT_PROBES)))
                results["steps"].append(record)
            elif name == "edit20":
                data = work / "edit20.json"
                data.write_text(json.dumps(edited(document, 20)))
                copy = finetune_copy(out, work / name)
                results["steps"].append(step(
                    "after, 20 patterns edited: intentkit train --finetune", ROOT,
                    ["-m", "intentkit", "train", "--data", data, "--out", copy, "--finetune"],
                    copy))
            save()
    save()


if __name__ == "__main__":
    main()
