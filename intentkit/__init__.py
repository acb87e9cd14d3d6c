"""intentkit: an intent classifier for chatbots (CNN-BiLSTM + transformer + CNN ensemble)."""
__version__ = "0.1.0"
