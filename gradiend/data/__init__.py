"""Stage 1: turn raw text into masked per-class training data and neutral sentences.

spaCy, ``datasets`` and pyarrow are imported only when a feature needs them
(``pip install gradiend[data]``).
"""

from .creator import TextPredictionDataCreator
from .filters import SpacyTagSpec, TextFilterConfig
from .preprocess import TextPreprocessConfig, preprocess_texts
from .sources import resolve_base_data
from .templates import neutral_templates

__all__ = [
    "SpacyTagSpec",
    "TextFilterConfig",
    "TextPredictionDataCreator",
    "TextPreprocessConfig",
    "neutral_templates",
    "preprocess_texts",
    "resolve_base_data",
]
