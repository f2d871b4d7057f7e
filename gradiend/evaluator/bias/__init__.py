"""Bias benchmarks for any masked or causal LM: CrowS-Pairs, StereoSet, WinoBias and SEAT,
each score with a bootstrap 95 % interval, and a before/after comparison."""

from gradiend.evaluator.bias.api import SUITES, BiasConfig, evaluate_bias, load_suites
from gradiend.evaluator.bias.bootstrap import BootstrapConfig, Score, bootstrap
from gradiend.evaluator.bias.compare import compare_bias
from gradiend.evaluator.bias.data import CrowsPair, StereoItem, load_crows, load_stereoset
from gradiend.evaluator.bias.data_wino import WinoPair, load_weat, load_winobias
from gradiend.evaluator.bias.scoring import ScoreConfig, score_texts, sentence_scores
from gradiend.evaluator.bias.seat import SEAT_TESTS, SeatTest, effect_size, encode_sentences

__all__ = [
    "SEAT_TESTS",
    "SUITES",
    "BiasConfig",
    "BootstrapConfig",
    "CrowsPair",
    "Score",
    "ScoreConfig",
    "SeatTest",
    "StereoItem",
    "WinoPair",
    "bootstrap",
    "compare_bias",
    "effect_size",
    "encode_sentences",
    "evaluate_bias",
    "load_crows",
    "load_stereoset",
    "load_suites",
    "load_weat",
    "load_winobias",
    "score_texts",
    "sentence_scores",
]
