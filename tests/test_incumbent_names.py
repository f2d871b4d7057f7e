"""Every name ``gradiend`` 0.2.3 exports from its top-level package imports from ``gradiend``,
every 0.2.3 ``TrainingArguments`` field is accepted, and the helpers written for those names
(logging, seeds, trainer configs, paired filters, the data creator base, a fresh
``ModelWithGradiend``, the gradient datasets) do what they say on the tiny models."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import io
import logging
import os
import random

import numpy as np
import pytest
import torch
from conftest import he_she_data, neutral_texts
from tiny import make_model

import gradiend
from gradiend import (
    DataCreator,
    PairedTextFilterConfig,
    TextFilterConfig,
    TextGradientTrainingDataset,
    TextPredictionConfig,
    TextPredictionDataCreator,
    TextPredictionTrainer,
    TrainerConfig,
    TrainingArguments,
    create_model_with_gradiend,
    get_logger,
    set_seed,
    setup_logging,
)

# ``from gradiend import …`` of 0.2.3 (its ``__all__``), plus compute_cross_encoding_matrix
INCUMBENT_NAMES = """
GradiendModel ParamMappedGradiendModel ModelWithGradiend TextFilterConfig PairedTextFilterConfig
TextPredictionDataCreator DataCreator TextPreprocessConfig SpacyTagSpec preprocess_texts
resolve_base_data TextPredictionTrainer TextPredictionConfig TrainerConfig PrePruneConfig
PostPruneConfig LRSearchConfig setup_logging get_logger compute_similarity_matrix
compute_grouped_similarity_matrices compute_trainer_pair_encoding_matrix
compute_anchor_aligned_encoding_matrix build_cross_task_encoder_summary
compute_gradiend_feature_cross_encoding_matrix compute_gradiend_transition_cross_encoding_matrix
load_training_stats set_seed TrainerSuite TrainerCollection PositiveTrainerSuite
SymmetricTrainerSuite SuitePairDefinition PositiveFeatureDefinition TrainingArguments
TransitionSpec pair identity GradientTrainingDataset TextGradientTrainingDataset
create_model_with_gradiend plot_comparison_heatmap plot_gradiend_feature_cross_encoding_heatmap
plot_gradiend_transition_cross_encoding_heatmap plot_cross_encoding_heatmap
plot_similarity_heatmap plot_topk_overlap_heatmap plot_topk_overlap_venn check_plot_environment
configure_plot_style PlotStyleConfig PlotStyleStatus format_transition_label
transition_bidi_arrow transition_directed_arrow compute_cross_encoding_matrix
""".split()

# the field names of 0.2.3's TrainingArguments dataclass
INCUMBENT_FIELDS = """
experiment_dir output_dir use_cache add_identity_for_other_classes source target
train_batch_size base_gradient_batch_size gradiend_batch_size precompute_gradient_batches
precompute_gradient_buffer_size gradient_timing_steps runtime_monitor runtime_monitor_interval
runtime_monitor_system_stats train_max_size learning_rate lr_search_config num_train_epochs
max_steps weight_decay adam_epsilon optim criterion eval_strategy eval_steps
encoder_eval_train_max_size encoder_eval_max_size encoder_eval_balance include_other_classes
seed_selection_eval_max_size decoder_eval_max_size_training_like decoder_eval_max_size_neutral
decoder_eval_lrs decoder_eval_feature_factors eval_batch_size do_eval evaluate_fn save_strategy
save_steps save_only_best delete_models trust_remote_code dataset_trust_remote_code
model_use_cache prediction_objective mask_placeholder decoder_mlm_head_epochs
decoder_mlm_head_batch_size decoder_mlm_head_lr decoder_mlm_head_max_size
decoder_sequence_cloze_rhs_window params activation_encoder activation_decoder bias_decoder
latent_dim normalize_gradiend positive_class torch_dtype base_model_device_map
base_model_max_memory encoder_decoder_same_device max_seeds min_convergent_seeds
convergent_metric convergent_score_threshold convergent_mean_by_class_threshold
split_resplit_per_seed split_resplit_strategy seed seed_runs_dir saved_seed_runs
seed_stability_topk seed_stability_part analyze_seed_stability supervised_encoder
supervised_decoder use_cached_gradients pre_prune_config reuse_pre_prune
fail_on_non_convergence highlight_non_convergence post_prune_config metadata
""".split()


# --------------------------------------------------------------------------- the names
def test_lists_are_complete():
    assert len(INCUMBENT_NAMES) == 56 and len(set(INCUMBENT_NAMES)) == 56
    assert len(INCUMBENT_FIELDS) == 85 and len(set(INCUMBENT_FIELDS)) == 85


@pytest.mark.parametrize("name", INCUMBENT_NAMES)
def test_every_incumbent_name_imports_from_gradiend(name):
    namespace: dict = {}
    exec(f"from gradiend import {name}", namespace)  # the statement a 0.2.3 script runs
    assert namespace[name] is getattr(gradiend, name)
    assert name in gradiend.__all__


def test_names_are_the_library_objects_not_copies():
    """Each top-level name is the object of the module that defines it (one meaning)."""
    where = {
        "compute_grouped_similarity_matrices": "gradiend.evaluator.grouped",
        "compute_trainer_pair_encoding_matrix": "gradiend.evaluator.cross_family",
        "build_cross_task_encoder_summary": "gradiend.evaluator.cross_pool",
        "plot_comparison_heatmap": "gradiend.visualizer.cross_heatmaps",
        "plot_cross_encoding_heatmap": "gradiend.evaluator.cross_figures",
        "PlotStyleConfig": "gradiend.visualizer.style",
        "format_transition_label": "gradiend.visualizer._common",
        "SymmetricTrainerSuite": "gradiend.suite",
        "TransitionSpec": "gradiend.data.transitions",
        "load_training_stats": "gradiend.visualizer.convergence",
    }
    for name, module in where.items():
        assert getattr(gradiend, name) is getattr(importlib.import_module(module), name), name


def test_training_arguments_take_every_incumbent_field():
    defaults = {
        f.name: (f.default_factory() if f.default is dataclasses.MISSING else f.default)
        for f in dataclasses.fields(TrainingArguments)
    }
    assert set(INCUMBENT_FIELDS) <= set(defaults), set(INCUMBENT_FIELDS) - set(defaults)
    args = TrainingArguments(**{name: defaults[name] for name in INCUMBENT_FIELDS})
    assert args.train_batch_size == 32 and args.learning_rate == 1e-5
    # a few with values: the aliases and the seed fields keep what was given
    args = TrainingArguments(base_gradient_batch_size=8, seed=5, saved_seed_runs="best_only")
    assert (args.train_batch_size, args.seed, args.saved_seed_runs) == (8, 5, "best_only")


# --------------------------------------------------------------------------- logging, seeds
@pytest.fixture
def clean_gradiend_logger():
    log = logging.getLogger("gradiend")
    saved = (list(log.handlers), log.level, log.propagate)
    yield log
    log.handlers[:] = saved[0]
    log.setLevel(saved[1])
    log.propagate = saved[2]


def test_setup_logging_adds_one_handler_once(clean_gradiend_logger):
    log = clean_gradiend_logger
    before = len(log.handlers)
    first, second = io.StringIO(), io.StringIO()
    assert setup_logging("DEBUG", stream=first) is log
    assert len(log.handlers) == before + 1
    setup_logging("INFO", fmt="%(levelname)s|%(name)s|%(message)s", stream=second)
    assert len(log.handlers) == before + 1  # replaced, not added
    get_logger("my_script").info("hello")
    get_logger("my_script").debug("too detailed")
    assert second.getvalue() == "INFO|gradiend.my_script|hello\n"  # once, at the new level
    assert first.getvalue() == ""  # the replaced handler is gone
    assert log.level == logging.INFO and log.propagate is False
    with pytest.raises(ValueError, match="unknown logging level"):
        setup_logging("LOUD")


def test_get_logger_names_a_child_of_gradiend():
    assert get_logger().name == "gradiend"
    assert get_logger("exp").name == "gradiend.exp"
    assert get_logger("gradiend.trainer").name == "gradiend.trainer"
    assert get_logger("exp").parent is logging.getLogger("gradiend")


def _draws() -> tuple:
    return torch.rand(6).tolist(), np.random.rand(3).tolist(), random.random()


def test_set_seed_reproduces_every_generator():
    set_seed(123)
    first = _draws()
    set_seed(123)
    assert _draws() == first
    set_seed(124)
    assert _draws()[0] != first[0]
    with pytest.raises(ValueError, match="non-negative integer"):
        set_seed(-1)


def test_set_seed_deterministic_switches_torch(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic
    try:
        set_seed(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic = before[1]


# --------------------------------------------------------------------------- trainer config
@pytest.fixture(scope="module")
def tiny_mlm():
    return make_model("mlm")


def test_config_fields_are_trainer_keywords_with_the_same_defaults():
    params = inspect.signature(TextPredictionTrainer).parameters
    assert "config" in params and params["config"].kind is inspect.Parameter.KEYWORD_ONLY
    for f in dataclasses.fields(TextPredictionConfig):
        assert f.name in params, f.name
        assert params[f.name].default == f.default, f.name
    assert {f.name for f in dataclasses.fields(TrainerConfig)} < {
        f.name for f in dataclasses.fields(TextPredictionConfig)
    }


def _same_trainer(a: TextPredictionTrainer, b: TextPredictionTrainer) -> None:
    assert a.table.df.equals(b.table.df)
    assert a.target_classes == b.target_classes and a.run_dir == b.run_dir
    assert (a.img_format, a.mask, a.progress) == (b.img_format, b.mask, b.progress)
    assert a.neutral_df.equals(b.neutral_df)


def test_config_builds_the_trainer_keywords_build(tiny_mlm, tmp_path):
    args = TrainingArguments(experiment_dir=str(tmp_path), max_steps=5)
    given = dict(
        run_id="cfg", data=he_she_data(30), target_classes=["she", "he"],
        eval_neutral_data=neutral_texts(10), img_format="pdf", progress=False,
    )  # fmt: skip
    by_keywords = TextPredictionTrainer(tiny_mlm, args=args, **given)
    by_config = TextPredictionTrainer(tiny_mlm, args=args, config=TextPredictionConfig(**given))
    _same_trainer(by_keywords, by_config)
    assert by_config.target_classes == ["she", "he"] and by_config.img_format == "pdf"
    # explicit keywords (and positional ones) win over the config's fields
    cfg = TextPredictionConfig(**given)
    assert TextPredictionTrainer(tiny_mlm, "mine", config=cfg, args=args).run_id == "mine"
    wins = TextPredictionTrainer(tiny_mlm, config=cfg, args=args, target_classes=["he", "she"])
    assert wins.target_classes == ["he", "she"] and wins.img_format == "pdf"


def test_config_of_the_wrong_type_is_refused(tiny_mlm):
    with pytest.raises(TypeError, match="takes a TextPredictionConfig"):
        TextPredictionTrainer(tiny_mlm, config={"data": he_she_data(10)})
    with pytest.raises(TypeError, match="did you mean 'img_format'"):
        TextPredictionConfig(img_fromat="pdf")


# --------------------------------------------------------------------------- data creator
def _corpus(n: int = 30) -> list[str]:
    he = [f"On day number {i} of the long trip the guide said that he was tired." for i in range(n)]
    she = [f"During week {i} of the long course the teacher said she would stay." for i in range(n)]
    return he + she


def test_paired_filter_config_expands_into_its_two_classes():
    he = TextFilterConfig(targets=["he"], id="he")
    pair = PairedTextFilterConfig(he, ["she"])
    assert list(pair) == [he, TextFilterConfig(targets=["she"])] and pair.ids == ("he", "she")
    kw = dict(base_data=_corpus(), min_left_context_words=3, progress=False)
    paired = TextPredictionDataCreator(feature_targets=pair, **kw)
    in_list = TextPredictionDataCreator(feature_targets=[pair], **kw)
    plain = TextPredictionDataCreator(feature_targets=list(pair), **kw)
    assert paired.feature_targets == in_list.feature_targets == plain.feature_targets
    split = dict(train_ratio=1.0, validation_ratio=0.0, test_ratio=0.0, balance=False)
    split["min_rows_per_class_for_split"] = 1
    got, want = paired.generate_training_data(**split), plain.generate_training_data(**split)
    assert sorted(got) == ["he", "she"] and all(got[c].equals(want[c]) for c in want)
    assert len(got["he"]) == len(got["she"]) == 30
    with pytest.raises(ValueError, match="both classes have the id 'he'"):
        PairedTextFilterConfig(["he"], ["he"])
    with pytest.raises(TypeError, match="not a TextFilterConfig or words"):
        PairedTextFilterConfig(he, 3)


def test_data_creator_is_the_abstract_base():
    creator = TextPredictionDataCreator(base_data=_corpus(3), progress=False)
    assert isinstance(creator, DataCreator)
    with pytest.raises(TypeError, match="abstract"):
        DataCreator()


# --------------------------------------------------------------------------- model, datasets
def _expected_numel(model, fragment: str) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if fragment in n)


def test_create_model_with_gradiend_selects_the_parameters(tiny_mlm):
    model, _ = tiny_mlm
    mwg = create_model_with_gradiend(tiny_mlm, params=["*.layer.0.*"], latent_dim=2)
    assert isinstance(mwg, gradiend.ModelWithGradiend)
    assert mwg.gradiend.input_dim == _expected_numel(model, ".layer.0.")
    assert mwg.gradiend.latent_dim == 2 and mwg.base_model is model
    assert all(".layer.0." in n for n in mwg.param_map.names)
    every = create_model_with_gradiend(tiny_mlm)  # default: every backbone parameter
    assert every.gradiend.input_dim == _expected_numel(model, "bert.")
    again = create_model_with_gradiend(tiny_mlm, params=["*.layer.0.*"], latent_dim=2)
    assert torch.equal(again.gradiend.W_e, mwg.gradiend.W_e)  # seeded: the same initial weights
    with pytest.raises(ValueError, match="source="):
        create_model_with_gradiend(tiny_mlm, source="both")


def test_text_gradient_dataset_yields_the_trainers_gradients(tiny_mlm):
    from gradiend.trainer.gradient_data import GradientBatches

    mwg = create_model_with_gradiend(tiny_mlm, params=["*.layer.1.*"])
    ds = TextGradientTrainingDataset(he_she_data(12), mwg, batch_size=4)
    assert ds.target_classes == ["he", "she"] and len(ds) == len(ds.batches) > 2
    sample = ds[0]
    assert sample["source"].shape == (mwg.gradiend.input_dim,) == sample["target"].shape
    assert sample["source"].norm() > 0 and sample["target"].norm() > 0
    # the label: with target="diff" a she→he row moves the model towards he (target_classes[0])
    rows = ds.df.iloc[ds.batches[0]]
    assert set(rows["feature_class_id"]) == {rows["feature_class_id"].iloc[0]}  # one transition
    want = 1.0 if rows["alternative_class"].iloc[0] == "he" else -1.0
    assert float(sample["label"]) == want
    # the trainer's cache of the same batches holds the same vectors
    cache = GradientBatches(ds.computer, ds.items, ds.batches, "alternative", "diff", 1e9,
                            progress=False, dtype=torch.float32)  # fmt: skip
    for i in (0, len(ds) - 1):
        s, t = cache[i]
        assert torch.allclose(ds[i]["source"], s) and torch.allclose(ds[i]["target"], t)
    # and a batch's vector is the mean of its rows' own gradients
    per_row = ds.computer.per_example([ds.items[j] for j in ds.batches[0]], "alternative")
    assert torch.allclose(per_row.mean(0), sample["source"], atol=1e-6)
    encoded = mwg.encode(sample["source"][None])
    assert encoded.shape == (1, 1)


def test_gradient_dataset_checks_its_inputs(tiny_mlm):
    mwg = create_model_with_gradiend(tiny_mlm, params=["*.layer.1.*"])
    with pytest.raises(TypeError, match="ModelWithGradiend"):
        TextGradientTrainingDataset(he_she_data(4), tiny_mlm)
    with pytest.raises(ValueError, match="one per item"):
        gradiend.GradientTrainingDataset(mwg, [], [1.0])
    with pytest.raises(ValueError, match="source="):
        gradiend.GradientTrainingDataset(mwg, [], [], source="both")
