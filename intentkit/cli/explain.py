"""`intentkit explain TEXT`: why a published model gives a message its answer."""
import json

from .common import add_model_arguments, import_tensorflow_for, model_paths


def add_parser(subcommands, name):
    parser = subcommands.add_parser(
        name, help="explain a model's answer to one message",
        description="Classify one message and say why: the nearest training patterns (with "
        "their intents and similarity), each word's effect on the answer's probability (what "
        "removing it changes), and for a fallback the rule that fired and the runner-up. See "
        "docs/explain.md.")
    parser.add_argument("text", help="the message to explain")
    add_model_arguments(parser)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--neighbours", type=int, default=5, metavar="N",
                        help="nearest training patterns shown (default: %(default)s)")
    parser.add_argument("--json", action="store_true",
                        help="print the result with its explanation as JSON")
    return parser


def run(args):
    import_tensorflow_for(args.runtime, args.verbose)
    from ..serving.predictor import get_predictor
    predictor = get_predictor(*model_paths(args), args.use_ensemble, args.runtime,
                              cache_size=args.cache_size)
    result = predictor.explain(args.text, top_k=args.top_k, neighbours=args.neighbours)
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else describe(result))
    return 0


def describe(result):
    """The explanation as lines a person reads."""
    explanation = result["explanation"]
    lines = [f"answer: {result['intent']} (confidence {result['confidence']:.3f}"
             + (f"; language {result['language']}" if result.get("language") else "") + ")"]
    fallback = explanation["fallback"]
    if fallback:
        best, runner_up = fallback["best_guess"], fallback["runner_up"]
        lines.append(f"fallback because: {fallback['reason']} (threshold "
                     f"{fallback['threshold']:.3f}, margin {fallback['margin']:.3f}); best guess "
                     + (f"{best['intent']} {best['confidence']:.3f}" if best else "none")
                     + (f", runner-up {runner_up['intent']} {runner_up['confidence']:.3f}"
                        if runner_up else ""))
    lines.append(f"words (effect on P({explanation['answer']}) when removed):")
    for word in sorted(explanation["words"], key=lambda w: -abs(w["effect"])):
        lines.append(f"  {word['effect']:+.3f}  {word['word']}")
    if explanation["nearest_patterns"]:
        lines.append("nearest training patterns:")
        for pattern in explanation["nearest_patterns"]:
            lines.append(f"  {pattern['similarity']:.3f}  {pattern['intent']:<20} "
                         f"{pattern['text']!r}")
    else:
        lines.append("nearest training patterns: none ("
                     + explanation.get("nearest_patterns_unavailable", "none stored") + ")")
    return "\n".join(lines)
