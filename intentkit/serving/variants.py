"""A/B tests: several runs served at once, each request routed to one of them.

`intentkit serve --variant live=current --variant new=RUN_ID --traffic new=0.1` serves the live
run to 90 % of users and run RUN_ID to 10 %. A request carrying a `user` (or `session`) is routed
by a stable hash of it: the same user meets the same variant in every worker, replica and restart
(the hash is SHA-256, not Python's salted hash()). A request without one is routed at random in
the same proportions. Shares not given split what the given ones leave equally; shares must add
up to 1. A variant's run is a run id of the model directory, or `current` (the live run,
following promotions).
"""
import hashlib
import math
import random
from dataclasses import dataclass
from pathlib import Path

from .. import artifacts
from ..errors import ConfigError

DEFAULT_VARIANT = "default"  # the one variant of a service without an A/B test
CURRENT = "current"
MAX_NAME_CHARS = 40
SHARE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Variant:
    name: str
    run: str  # a run id of the model directory, or CURRENT
    share: float

    def paths(self, model_dir):
        """(model, preprocessor, ensemble dir) this variant answers from."""
        base = Path(model_dir) if self.run == CURRENT else \
            Path(model_dir) / artifacts.RUNS_DIR / self.run
        return (str(base / artifacts.MODEL_FILE), str(base / artifacts.PREPROCESSOR_FILE),
                str(base / artifacts.ENSEMBLE_DIR))


def _pairs(specs, option):
    """{NAME: VALUE} of `--option NAME=VALUE` arguments, each name once."""
    pairs = {}
    for spec in specs:
        name, sign, value = spec.partition("=")
        name, value = name.strip(), value.strip()
        if not sign or not name or not value:
            raise ConfigError(f"{option} {spec!r}: expected NAME=VALUE, e.g. {option} "
                              f"{'new=0.1' if option == '--traffic' else 'new=RUN_ID'}")
        if not (len(name) <= MAX_NAME_CHARS and name.replace("-", "").replace("_", "").isalnum()
                and name.isascii()):
            raise ConfigError(f"{option} {spec!r}: a variant name is letters, digits, - and _ "
                              f"(at most {MAX_NAME_CHARS})")
        if name in pairs:
            raise ConfigError(f"{option}: variant {name!r} given twice")
        pairs[name] = value
    return pairs


def parse_variants(variant_specs, traffic_specs=()):
    """The variants of `--variant NAME=RUN_ID ...` and `--traffic NAME=SHARE ...`, sorted by name;
    ConfigError (one line) for a malformed spec, an unknown name or shares not adding up to 1."""
    runs = _pairs(variant_specs, "--variant")
    if len(runs) < 2:
        raise ConfigError("an A/B test needs at least two --variant NAME=RUN_ID (e.g. "
                          "--variant live=current --variant new=RUN_ID)")
    given = {}
    for name, text in _pairs(traffic_specs, "--traffic").items():
        if name not in runs:
            raise ConfigError(f"--traffic {name}={text}: no --variant {name} (variants: "
                              f"{', '.join(sorted(runs))})")
        try:
            share = float(text)
        except ValueError:
            share = math.nan
        if not 0 <= share <= 1:
            raise ConfigError(f"--traffic {name}={text}: a share is a number from 0 to 1")
        given[name] = share
    left = 1 - sum(given.values())
    rest = [name for name in runs if name not in given]
    if left < -SHARE_TOLERANCE or (not rest and abs(left) > SHARE_TOLERANCE):
        raise ConfigError(f"--traffic shares add up to {sum(given.values()):g}, not 1: give "
                          "shares that add up to 1, or leave one variant without --traffic")
    shares = {**given, **{name: max(left, 0.0) / len(rest) for name in rest}}
    return [Variant(name, runs[name], shares[name]) for name in sorted(runs)]


def bucket(key, salt="intentkit-ab"):
    """A number in [0, 1) that depends only on `key` (and the experiment's salt)."""
    digest = hashlib.sha256(f"{salt}\0{key}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class Router:
    """Picks a variant per request: by the hash of a caller-given key, else at random."""

    def __init__(self, variants, salt="intentkit-ab", rng=None):
        self.variants = list(variants)
        self.by_name = {variant.name: variant for variant in self.variants}
        self.salt = salt
        self.rng = rng or random.Random()
        self._bounds = []
        total = 0.0
        for variant in self.variants:
            total += variant.share
            self._bounds.append(total)

    def choose(self, key=None):
        point = self.rng.random() if key is None else bucket(key, self.salt)
        point *= self._bounds[-1]  # shares add up to 1 within SHARE_TOLERANCE
        for variant, bound in zip(self.variants, self._bounds):
            if point < bound:
                return variant
        return self.variants[-1]
