"""intentkit: intent classification for chatbots (a CNN-BiLSTM + MiniLM + CNN ensemble).

The public API. Its names are imported on first use, so `import intentkit` stays light: a
chatbot that only serves answers never imports TensorFlow or the training code.

    from intentkit import Predictor, train, TrainConfig, IntentkitError

    train(TrainConfig(data="intents.json", out="models/bot"))
    Predictor.from_dir("models/bot").predict("hello there")
"""
from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

__all__ = ["Client", "IntentkitError", "Predictor", "TrainConfig", "__version__", "train"]

_HOMES = {"Predictor": "intentkit.serving.predictor", "train": "intentkit.training.pipeline",
          "TrainConfig": "intentkit.training.config", "IntentkitError": "intentkit.errors",
          "Client": "intentkit.serving.client"}

if TYPE_CHECKING:
    from .errors import IntentkitError
    from .serving.client import Client
    from .serving.predictor import Predictor
    from .training.config import TrainConfig
    from .training.pipeline import train


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'intentkit' has no attribute {name!r}")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
