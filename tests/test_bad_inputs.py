"""Bad inputs and faults, one case per kind: the error's type, a message that names the fix,
no gradient computed and no byte written (or lost) before the refusal.

Faults that can only show during the work (a corrupt cache file, a failing seed) are healed or
reported with their cause; results that would mean nothing are refused or warned about.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import fast_args, he_she_data, neutral_texts
from tiny import make_model

from gradiend import (
    GradiendModel,
    TextPredictionTrainer,
    TrainingArguments,
    compute_similarity_matrix,
)
from gradiend._io import clean_orphans, read_json_cache
from gradiend.lm.gradients import GradientComputer
from gradiend.lm.loading import load_base_model
from gradiend.lm.objectives import make_objective
from gradiend.lm.params import ParamMap
from gradiend.trainer import PostPruneConfig, PrePruneConfig
from gradiend.trainer.data_checks import MeaninglessResultWarning


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def grad_calls(monkeypatch):
    """Names of the gradient methods called (they still work)."""
    calls: list[str] = []
    for name in ("batch", "per_example", "iter_per_example", "directional"):
        original = getattr(GradientComputer, name)

        def counted(self, *a, _original=original, _name=name, **k):
            calls.append(_name)
            return _original(self, *a, **k)

        monkeypatch.setattr(GradientComputer, name, counted)
    return calls


def tree(root: Path) -> dict[str, bytes]:
    """Every file and folder under ``root`` with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(root.rglob("*"))
    }


def refused(fn, exc, match: str, root: Path, calls: list[str]) -> BaseException:
    """``fn()`` raises ``exc`` matching ``match`` with no gradient and nothing written."""
    before = tree(root)
    with pytest.raises(exc, match=match) as info:
        fn()
    assert calls == [], f"gradients computed before the refusal: {calls}"
    assert tree(root) == before, "files were written or changed before the refusal"
    return info.value


def make_trainer(planted, tmp_path, data=None, kind="mlm", **kw):
    args = kw.pop("args", None) or fast_args(tmp_path / "runs", max_steps=5)
    return TextPredictionTrainer(
        model=kw.pop("model", planted[kind]),
        run_id="run",
        data=he_she_data(40) if data is None else data,
        args=args,
        progress=False,
        **kw,
    )


# --------------------------------------------------------------------------- data loss
def test_output_dir_with_user_files_is_refused(planted, tmp_path, grad_calls):
    mine = tmp_path / "my_thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("years of work")
    args = fast_args(tmp_path / "runs", output_dir=str(mine))
    refused(
        lambda: make_trainer(planted, tmp_path, args=args).train(),
        FileExistsError,
        "did not write.*chapter1.tex.*Pass a new or empty folder",
        tmp_path,
        grad_calls,
    )


def test_output_dir_equal_to_the_run_folder_is_refused(planted, tmp_path, grad_calls):
    args = fast_args(tmp_path / "runs", output_dir=str(tmp_path / "runs" / "run"))
    refused(
        lambda: make_trainer(planted, tmp_path, args=args),
        ValueError,
        "would delete the run's caches.*Leave output_dir unset",
        tmp_path,
        grad_calls,
    )


def test_saving_replaces_only_gradiend_folders(tmp_path):
    model = GradiendModel(6, indices=None)
    target = tmp_path / "model"
    model.save_pretrained(target, extra_files={"training.json": {"a": 1}})
    model.save_pretrained(target, extra_files={"training.json": {"a": 2}})  # replace: ours
    assert read_json_cache(target / "training.json") == {"a": 2}
    (target / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    with pytest.raises(FileExistsError, match="notes.txt.*move those files away"):
        model.save_pretrained(target)
    assert tree(tmp_path) == before


def test_orphans_of_a_killed_save_are_cleaned(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(proc.stdout)
    parked = tmp_path / f".gradiend-old-{dead}-model"  # killed between the two renames
    GradiendModel(4).save_pretrained(parked)
    (tmp_path / f".gradiend-tmp-{dead}-model.abc").mkdir()
    (tmp_path / f".gradiend-tmp-{dead}-x.json.1.tmp").write_text("{")
    live = tmp_path / f".gradiend-tmp-{os.getpid()}-other.abc"
    live.mkdir()
    clean_orphans(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"model", live.name}
    assert GradiendModel.from_pretrained(tmp_path / "model").input_dim == 4


# --------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("field", "value", "fix"),
    [
        ("eval_batch_size", 0, "pass ≥ 1"),
        ("train_max_size", 0, "pass ≥ 1, or None"),
        ("train_batch_size", -4, "pass ≥ 1"),
        ("max_steps", 0, "-1 to train for num_train_epochs"),
        ("max_seeds", 0, "pass ≥ 1"),
        ("learning_rate", -1e-3, "pass a number > 0"),
        ("learning_rate", math.nan, "pass a finite number"),
        ("convergent_score_threshold", 1.5, "pass a value in \\[0, 1\\]"),
        ("min_convergent_seeds", 5, "raise max_seeds"),
    ],
)
def test_sizes_that_cannot_be_right(tmp_path, field, value, fix):
    with pytest.raises(ValueError, match=f"{field}.*{fix}"):
        TrainingArguments(experiment_dir=str(tmp_path), **{field: value})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "fix"),
    [
        (lambda: PrePruneConfig(topk=0), "pass a count ≥ 1 or a fraction"),
        (lambda: PrePruneConfig(topk=-0.5), "pass e.g. 0.01"),
        (lambda: PostPruneConfig(topk=1.5), "pass e.g. 0.01.*or an int"),
        (lambda: PrePruneConfig(n_samples=0), "pass an integer ≥ 1"),
        (lambda: PostPruneConfig(part="decoder"), "choose one of"),
        (lambda: TrainingArguments(post_prune_config={"topk": 0}), "pass a count ≥ 1"),
    ],
)
def test_fractions_and_pruning_configs(make, fix):
    with pytest.raises(ValueError, match=fix):
        make()


@pytest.mark.parametrize(
    ("kw", "fix"),
    [
        ({"params": "bert.encoder.*"}, r"pass params=\['bert.encoder.\*'\]"),
        ({"decoder_eval_lrs": "1e-3"}, r"pass decoder_eval_lrs=\[0.001\]"),
        ({"do_eval": "False"}, "True or False"),
        ({"train_batch_size": 8.0}, "must be an integer.*pass e.g."),
        ({"post_prune_config": 0.05}, r"PostPruneConfig\(topk=0.01\)"),
    ],
)
def test_wrong_types_are_named(kw, fix):
    with pytest.raises(TypeError, match=fix):
        TrainingArguments(**kw)


def test_target_classes_as_a_string(planted, tmp_path, grad_calls):
    refused(
        lambda: make_trainer(planted, tmp_path, target_classes="he"),
        TypeError,
        r"got the string 'he': pass target_classes=\['he', <the other class>\]",
        tmp_path,
        grad_calls,
    )


def test_experiment_dir_that_is_a_file(planted, tmp_path, grad_calls):
    (tmp_path / "runs").write_text("not a folder")
    refused(
        lambda: make_trainer(planted, tmp_path),
        NotADirectoryError,
        "is a file. Pass a folder path",
        tmp_path,
        grad_calls,
    )


def test_evaluate_encoder_arguments(planted, tmp_path, grad_calls):
    trainer = make_trainer(planted, tmp_path)
    refused(
        lambda: trainer.evaluate_encoder(max_size=0),
        ValueError,
        "pass max_size ≥ 1",
        tmp_path,
        grad_calls,
    )
    refused(
        lambda: trainer.evaluate_encoder(split="dev"),
        ValueError,
        "split must be one of",
        tmp_path,
        grad_calls,
    )


# --------------------------------------------------------------------------- data
def test_dict_of_lists(planted, tmp_path, grad_calls):
    data = {"he": ["the king said that [MASK] will come ."], "she": ["a [MASK] b"]}
    refused(
        lambda: make_trainer(planted, tmp_path, data=data),
        TypeError,
        r"data\['he'\] is a list.*pd.DataFrame\(\{'masked': texts, 'he': words\}\)",
        tmp_path,
        grad_calls,
    )


@pytest.mark.parametrize("where", ["word", "masked"])
def test_missing_label_or_text_per_class(planted, tmp_path, grad_calls, where):
    data = he_she_data(40)
    col = "she" if where == "word" else "masked"
    data["she"][col] = data["she"][col].astype(object)
    data["she"].loc[3, col] = None
    refused(
        lambda: make_trainer(planted, tmp_path, data=data),
        ValueError,
        rf"data\['she'\]: 1 row\(s\) have no value in column '{col}'.*dropna",
        tmp_path,
        grad_calls,
    )


def test_nan_label_in_a_unified_table(planted, tmp_path, grad_calls):
    frames = [
        df.rename(columns={c: "label"}).assign(label_class=c) for c, df in he_she_data(40).items()
    ]
    table = pd.concat(frames, ignore_index=True)
    table.loc[5, "label"] = float("nan")
    refused(
        lambda: make_trainer(planted, tmp_path, data=table),
        ValueError,
        "column 'label'.*drop them",
        tmp_path,
        grad_calls,
    )


def test_missing_neutral_text(planted, tmp_path, grad_calls):
    texts = neutral_texts(10) + [None]
    refused(
        lambda: make_trainer(planted, tmp_path, eval_neutral_data=texts),
        ValueError,
        "eval_neutral_data: 1 text.*drop them",
        tmp_path,
        grad_calls,
    )


def test_data_file_of_the_wrong_kind_and_a_missing_one(planted, tmp_path, grad_calls):
    txt = tmp_path / "sentences.txt"
    txt.write_text("the king said that he will come .\n")
    refused(
        lambda: make_trainer(planted, tmp_path, data=str(txt)),
        ValueError,
        "unsupported type '.txt'.*TextPredictionDataCreator",
        tmp_path,
        grad_calls,
    )
    refused(
        lambda: make_trainer(planted, tmp_path, data=str(tmp_path / "nope.csv")),
        FileNotFoundError,
        "does not exist",
        tmp_path,
        grad_calls,
    )


def test_split_column_that_does_not_exist(planted, tmp_path, grad_calls):
    refused(
        lambda: make_trainer(planted, tmp_path, split_col="fold"),
        ValueError,
        "split_col='fold' is not a column.*pass split_col=None",
        tmp_path,
        grad_calls,
    )


def test_text_without_the_mask_is_refused_at_construction(planted, tmp_path, grad_calls):
    data = he_she_data(40)
    data["he"].loc[0, "masked"] = "the king said that he will come ."
    refused(
        lambda: make_trainer(planted, tmp_path, data=data),
        ValueError,
        r"have no \[MASK\].*mask the target word",
        tmp_path,
        grad_calls,
    )


def test_validation_split_with_one_class(planted, tmp_path, grad_calls):
    data = he_she_data(40)
    for df in data.values():
        df["split"] = "train"
    data["he"].loc[:5, "split"] = "validation"
    refused(
        lambda: make_trainer(planted, tmp_path, data=data),
        ValueError,
        "no rows of class 'she'.*drop the split column",
        tmp_path,
        grad_calls,
    )


def test_duplicates_across_splits_warn(planted, tmp_path):
    data = he_she_data(40)
    for df in data.values():
        df["split"] = ["train"] * 30 + ["validation"] * 5 + ["test"] * 5
        df.loc[35, "masked"] = df.loc[0, "masked"]  # a training sentence also in test
    with pytest.warns(
        MeaninglessResultWarning, match="more than one split.*drop_duplicates"
    ) as rec:
        make_trainer(planted, tmp_path, data=data)
    # the warning names the caller's line, not the constructor wrapper inside the library
    assert [w.filename for w in rec if w.category is MeaninglessResultWarning] == [__file__]


# --------------------------------------------------------------------------- the base model
def test_missing_local_model_folder(tmp_path, grad_calls):
    refused(
        lambda: TextPredictionTrainer(model="./models/no-such-bert", data=he_she_data(10)),
        FileNotFoundError,
        "model folder models/no-such-bert does not exist; check the path",
        tmp_path,
        grad_calls,
    )
    refused(
        lambda: TextPredictionTrainer(model=None, data=he_she_data(10)),
        ValueError,
        "needs model=: a hub id, a model folder",
        tmp_path,
        grad_calls,
    )
    (tmp_path / "empty_model").mkdir()
    refused(
        lambda: load_base_model(str(tmp_path / "empty_model")),
        FileNotFoundError,
        "has no config.json: pass the folder written by save_pretrained",
        tmp_path,
        grad_calls,
    )


def test_truncated_gguf(tmp_path, grad_calls):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 10, 5) + b"\x05\x00\x00\x00")
    err = refused(
        lambda: load_base_model(str(path)),
        ValueError,
        "truncated or damaged \\(download it again\\)",
        tmp_path,
        grad_calls,
    )
    assert err.__cause__ is not None
    path.write_bytes(b"GG")
    refused(
        lambda: load_base_model(str(path)),
        ValueError,
        "not a GGUF file.*download it again",
        tmp_path,
        grad_calls,
    )


def test_tokenizer_without_max_length_truncates_long_rows(grad_calls):
    model, tok = make_model("mlm")
    tok.model_max_length = int(1e30)  # what a tokenizer without a limit reports
    lm = load_base_model((model, tok))
    assert tok.model_max_length == model.config.max_position_embeddings == 64
    objective = make_objective("auto", lm.kind, tok)
    long = " ".join(["the king said that"] * 40) + " [MASK] will come ."
    enc = objective.encode(long, ["he"])
    assert len(enc.input_ids) <= 64 and enc.input_ids[enc.positions[0]] == tok.mask_token_id
    assert grad_calls == []


def test_class_words_with_the_same_first_token(planted, tmp_path, grad_calls):
    data = {
        g: df.assign(masked=df["masked"].str.replace(" that [MASK]", " [MASK]"), **{g: f"that {g}"})
        for g, df in he_she_data(40).items()
    }
    trainer = make_trainer(planted, tmp_path, data=data, kind="clm")
    refused(
        trainer.train,
        ValueError,
        "same target.*token 'that'.*first tokens differ",
        tmp_path,
        grad_calls,
    )


def test_objective_that_does_not_fit_the_model(planted, tmp_path, grad_calls):
    args = fast_args(tmp_path / "runs", prediction_objective="mlm_mask_token")
    trainer = make_trainer(planted, tmp_path, kind="clm", args=args)
    refused(
        trainer.train,
        ValueError,
        "needs a masked LM.*prediction_objective='auto'",
        tmp_path,
        grad_calls,
    )


# --------------------------------------------------------------------------- results
def _gradiend_for(model, pattern: str, **meta) -> GradiendModel:
    pmap = ParamMap.from_model(model, [pattern])
    return GradiendModel(pmap.numel, param_map=pmap, **meta)


def test_similarity_across_base_models(tmp_path):
    bert, _ = make_model("mlm", seed=0)
    bert2, _ = make_model("mlm", seed=1)
    llama, _ = make_model("clm")
    query, q_proj = "*.layer.0.attention.self.query.*", "*.layers.0.self_attn.q_proj.*"
    a = _gradiend_for(bert, query, base_model_fingerprint={"model": "bert-a", "weights_sha": "1"})
    b = _gradiend_for(llama, q_proj, base_model_fingerprint={"model": "llama", "weights_sha": "2"})
    c = _gradiend_for(bert2, query, base_model_fingerprint={"model": "bert-b", "weights_sha": "3"})
    b.save_pretrained(tmp_path / "llama_run")
    with pytest.raises(ValueError, match="different parameter layouts.*Compare runs of one base"):
        compute_similarity_matrix({"a": a, "b": tmp_path / "llama_run"})
    with pytest.warns(MeaninglessResultWarning, match="different base models.*bert-a vs bert-b"):
        sim = compute_similarity_matrix({"a": a, "c": c})
    assert sim.shape == (2, 2)


def test_decoder_results_of_another_gradiend(planted, tmp_path, grad_calls):
    trainer = make_trainer(planted, tmp_path)
    pmap = ParamMap.from_model(planted["mlm"][0], ["*.layer.0.output.dense.bias"])
    GradiendModel(pmap.numel, param_map=pmap, target_classes=["he", "she"]).save_pretrained(
        trainer.model_dir
    )
    other = {"he": {"learning_rate": 1.0, "feature_factor": 1.0, "gradiend_fingerprint": "abc"}}
    out = tmp_path / "rewritten"
    refused(
        lambda: trainer.rewrite_base_model(decoder_results=other, output_dir=out),
        ValueError,
        "another GRADIEND.*Call evaluate_decoder\\(\\) on this trainer",
        tmp_path,
        grad_calls,
    )
    (out / "mine.txt").parent.mkdir()
    (out / "mine.txt").write_text("x")
    refused(
        lambda: trainer.rewrite_base_model(decoder_results={}, output_dir=out),
        FileExistsError,
        "not a model's. Pass a new or empty folder",
        tmp_path,
        grad_calls,
    )


# --------------------------------------------------------------------------- faults in the work
def test_corrupt_gradient_cache_is_reported_removed_and_recomputed(planted, tmp_path, caplog):
    args = fast_args(tmp_path, max_steps=6, eval_steps=3, use_cache=True)
    make_trainer(planted, tmp_path, args=args).train()
    files = sorted((tmp_path / "run" / "cache" / "gradients").rglob("batch_*.safetensors"))
    assert files
    files[0].write_bytes(files[0].read_bytes()[:40])  # truncated
    args2 = fast_args(tmp_path, max_steps=6, eval_steps=3, use_cache=True, learning_rate=2e-3)
    trainer = make_trainer(planted, tmp_path, args=args2)
    with caplog.at_level(logging.WARNING, logger="gradiend"):
        trainer.train()
    assert str(files[0]) in caplog.text and "recomputing" in caplog.text
    stats = trainer.get_training_stats()
    assert stats["base_passes"]["training_batches_computed"] == 1
    assert len(files[0].read_bytes()) > 40


def test_corrupt_json_cache_is_removed(tmp_path, caplog):
    path = tmp_path / "decoder_grid_cache.json"
    path.write_text('{"key": ')
    with caplog.at_level(logging.WARNING, logger="gradiend"):
        assert read_json_cache(path) is None
    assert str(path) in caplog.text and not path.exists()


def test_failing_seed_is_raised_with_its_cause(planted, tmp_path, monkeypatch):
    import gradiend.trainer.seeds as seeds

    def diverge(*a, **k):
        raise FloatingPointError("loss became nan at step 3")

    monkeypatch.setattr(seeds, "train_loop", diverge)
    trainer = make_trainer(planted, tmp_path, args=fast_args(tmp_path, max_steps=2))
    with pytest.raises(RuntimeError, match="FloatingPointError: loss became nan") as info:
        trainer.train()
    assert isinstance(info.value.__cause__, FloatingPointError)
    assert not (tmp_path / "run" / "model").exists()
    assert torch.is_grad_enabled()


def test_spacy_tags_no_token_can_have(tmp_path):
    import warnings

    spacy = pytest.importorskip("spacy")

    from gradiend import TextFilterConfig, TextPredictionDataCreator

    nlp = spacy.blank("de")
    nlp.add_pipe("morphologizer").add_label("Case=Nom|Gender=Masc|Number=Sing|POS=DET")

    def creator(tags):
        cfg = TextFilterConfig(targets=["der"], id="masc_nom", spacy_tags=tags)
        return TextPredictionDataCreator(
            base_data=["Der Mann sagt , dass der Hund kommt ."],
            spacy_model=nlp,
            feature_targets=[cfg],
        )

    with pytest.raises(ValueError, match="'Gender': 'Masculine'.*did you mean 'Masc'.*Fix"):
        creator({"pos": "DET", "Gender": "Masculine"})
    with pytest.raises(ValueError, match="'pos': 'DETT'.*did you mean 'DET'.*Fix"):
        creator({"pos": "DETT", "Gender": "Masc"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", MeaninglessResultWarning)
        creator({"pos": "DET", "Gender": "Masc", "Case": ["Nom", "Acc"]})
    assert list(tmp_path.iterdir()) == []


def test_pre_prune_samples_above_the_rows_are_named(caplog):
    """More pre-prune samples than rows: the rows repeat, and the warning says so with the fix."""
    import logging

    import pandas as pd

    from gradiend.trainer.pruning import stratified_sample

    df = pd.DataFrame({"feature_class_id": [0, 0, 0, 1, 1, 1]})
    with caplog.at_level(logging.WARNING, logger="gradiend.trainer.pruning"):
        pos = stratified_sample(df, 16, seed=0)
    assert len(pos) == 16
    assert "n_samples=16" in caplog.text and "pass n_samples ≤ 6" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gradiend.trainer.pruning"):
        stratified_sample(df, 6, seed=0)
    assert "n_samples" not in caplog.text
