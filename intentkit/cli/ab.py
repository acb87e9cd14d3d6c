"""`intentkit ab report|promote`: compare the variants of an A/B test, promote the winner.

Accuracy comes from confirmed feedback rows (a person checked `correct`; accurate when
`predicted == correct`), fallback rate and latency from the service's --request-log. Each
figure has a 95 % confidence interval; the accuracy of each variant is compared with the first
(the control, by name order, or --control) by a two-proportion z-test.
"""
import json
import math
from collections import defaultdict

from ..errors import ConfigError
from .common import HelpFormatter, add_model_dir, existing_file, existing_model_dir

EXAMPLES = """\
examples:
  intentkit ab report --feedback-in feedback.jsonl --request-log requests.jsonl
  intentkit ab promote --feedback-in feedback.jsonl -m models/bot"""

Z95 = 1.959964


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="compare A/B variants on feedback and request logs; promote the winner",
        description=__doc__.splitlines()[0], epilog=EXAMPLES)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action in ("report", "promote"):
        sub = actions.add_parser(action, help=f"{action} (see intentkit ab --help)",
                                 formatter_class=HelpFormatter)
        sub.add_argument("--feedback-in", dest="feedback", required=True, metavar="FILE",
                         help="the service's --feedback-out file (its confirmed rows)")
        sub.add_argument("--request-log", metavar="FILE", help="the service's --request-log")
        sub.add_argument("--control", help="the variant the others are compared with")
        sub.add_argument("--alpha", type=float, default=0.05, help="significance level")
        if action == "report":
            sub.add_argument("--json", action="store_true", help="print JSON")
        else:
            add_model_dir(sub)
    return parser


def _proportion(successes, n):
    """(rate, low, high): Wilson's 95 % interval."""
    if n == 0:
        return None, None, None
    rate = successes / n
    centre = (rate + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(rate * (1 - rate) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return rate, max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_p(s1, n1, s2, n2):
    """Two-sided p-value of the difference of two proportions (pooled z-test)."""
    if not n1 or not n2:
        return None
    pooled = (s1 + s2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 1.0
    return math.erfc(abs(s1 / n1 - s2 / n2) / spread / math.sqrt(2))


def _read_lines(path):
    from ..data.feedback import read_feedback
    return read_feedback(path)


def compare(feedback_path, request_log=None, control=None, alpha=0.05):
    """{"control", "variants": {name: figures}} (see the module's docstring)."""
    rows = [row for row in _read_lines(feedback_path)
            if row.get("confirmed") is True and row.get("variant")]
    counts = defaultdict(lambda: {"n": 0, "correct": 0, "versions": set()})
    for row in rows:
        entry = counts[row["variant"]]
        entry["n"] += 1
        entry["correct"] += row.get("predicted") == row["correct"]
        entry["versions"].add(row.get("model_version"))
    served = defaultdict(lambda: {"answers": 0, "fallbacks": 0, "latencies": []})
    if request_log:
        for request in _request_log(request_log):
            if request.get("variant") and request.get("status") == 200 and \
                    request.get("answers"):
                entry = served[request["variant"]]
                entry["answers"] += len(request["answers"])
                entry["fallbacks"] += sum(bool(a.get("fallback")) for a in request["answers"])
                entry["latencies"].append(request["latency_ms"])
    names = sorted(set(counts) | set(served))
    if not names:
        raise ConfigError(f"{feedback_path}: no confirmed feedback row names a variant; confirm "
                          "rows recorded while the A/B test ran")
    control = control or names[0]
    if control not in names:
        raise ConfigError(f"--control {control}: no such variant (variants: {', '.join(names)})")
    report = {"control": control, "alpha": alpha, "variants": {}}
    for name in names:
        n, correct = counts[name]["n"], counts[name]["correct"]
        accuracy, low, high = _proportion(correct, n)
        entry = {"feedback_rows": n, "accuracy": accuracy, "accuracy_ci95": [low, high],
                 "model_versions": sorted(v for v in counts[name]["versions"] if v)}
        if name != control:
            p = two_proportion_p(correct, n, counts[control]["correct"], counts[control]["n"])
            entry["p_value_vs_control"] = p
            entry["significant"] = p is not None and p < alpha
        use = served[name]
        if use["answers"]:
            rate, low, high = _proportion(use["fallbacks"], use["answers"])
            latencies = sorted(use["latencies"])
            mean = sum(latencies) / len(latencies)
            spread = (math.sqrt(sum((x - mean) ** 2 for x in latencies) / (len(latencies) - 1))
                      if len(latencies) > 1 else 0.0)
            half = Z95 * spread / math.sqrt(len(latencies))
            entry.update({"answers": use["answers"], "fallback_rate": rate,
                          "fallback_rate_ci95": [low, high], "latency_ms_mean": mean,
                          "latency_ms_ci95": [mean - half, mean + half],
                          "latency_ms_p50": latencies[len(latencies) // 2]})
        report["variants"][name] = entry
    return report


def winner(report):
    """The variant whose accuracy beats every other significantly, or None."""
    variants = report["variants"]
    best = max(variants, key=lambda name: variants[name]["accuracy"] or 0)
    control = report["control"]
    if best == control:
        others = [v for name, v in variants.items() if name != control]
        return best if others and all(v.get("significant") for v in others) else None
    return best if variants[best].get("significant") else None


def _request_log(path):
    """The rows of a --request-log file; a line that is not one: ConfigError naming it."""
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if not isinstance(row, dict) or not isinstance(row.get("latency_ms", 0),
                                                           (int, float)):
                raise ConfigError(f"--request-log {path}, line {number}: not a request-log row "
                                  "of `intentkit serve --request-log`; give that file")
            yield row


def run(args):
    existing_file(args.feedback, "--feedback-in")
    if args.request_log:
        existing_file(args.request_log, "--request-log")
    if args.action == "promote":
        existing_model_dir(args.model_dir)
    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha {args.alpha}: a significance level is between 0 and 1, "
                          "e.g. 0.05")
    report = compare(args.feedback, args.request_log, args.control, args.alpha)
    if args.action == "report":
        if args.json:
            print(json.dumps(report, indent=2))
            return 0
        for name, v in report["variants"].items():
            accuracy = "-" if v["accuracy"] is None else (
                f"{100 * v['accuracy']:.1f} % [{100 * v['accuracy_ci95'][0]:.1f}, "
                f"{100 * v['accuracy_ci95'][1]:.1f}]")
            line = f"{name:<12} n={v['feedback_rows']:<6} accuracy {accuracy}"
            if "p_value_vs_control" in v and v["p_value_vs_control"] is not None:
                line += (f"  p={v['p_value_vs_control']:.3g} "
                         f"({'significant' if v['significant'] else 'not significant'})")
            if "fallback_rate" in v:
                line += (f"  fallback {100 * v['fallback_rate']:.1f} %  latency "
                         f"{v['latency_ms_mean']:.2f} ms")
            print(line + ("  (control)" if name == report["control"] else ""))
        return 0
    best = winner(report)
    if best is None:
        raise ConfigError("no variant is significantly more accurate than the others; collect "
                          "more confirmed feedback, or promote a run by hand (`intentkit runs "
                          "promote ID`)")
    versions = report["variants"][best]["model_versions"]
    if len(versions) != 1:
        raise ConfigError(f"variant {best} answered with {len(versions)} model versions "
                          f"({', '.join(versions)}); promote one by hand")
    from ..artifacts import runs
    print(f"winner: {best}; live: {runs.promote(args.model_dir, versions[0])}")
    return 0
