"""An unconverged GRADIEND is never compared or carried on silently: the CLI's
``--allow-unconverged`` and the comparisons' ``allow_unconverged=True``.

The collapse is the planted one of tests/test_collapse.py (a tiny causal model that mostly
predicts "it" in the he/she slot; ``source="alternative"`` at 1e-2 collapses, ``"diff"``
converges), trained once per module.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import he_she_data
from test_collapse import _trainer, collapsing  # noqa: F401 - the planted-collapse fixture

from gradiend import cli
from gradiend.evaluator import compute_cross_encoding_matrix, compute_similarity_matrix, topk_sets
from gradiend.evaluator.compare import compare
from gradiend.evaluator.converged_runs import MARK
from gradiend.model.gradiend import GradiendModel
from gradiend.trainer.convergence_check import UnconvergedError

BAD, GOOD = "collapsed", "converged"


@pytest.fixture(scope="module")
def runs(collapsing, tmp_path_factory):  # noqa: F811 - the fixture imported above
    """Two trainers on the planted collapse: one collapsed (no remedy), one converged (diff)."""
    tmp = tmp_path_factory.mktemp("runs")
    bad = _trainer(collapsing, tmp, run_id=BAD, auto_remedy=False)
    good = _trainer(collapsing, tmp, run_id=GOOD, source="diff", auto_remedy=False)
    for trainer in (bad, good):
        trainer.train()
    assert bad.get_training_stats()["convergence_status"] == "collapsed"
    assert good.get_training_stats()["convergence_status"] == "converged"
    return {BAD: bad, GOOD: good}


# ---------------------------------------------------------------------------- the API
def test_compare_refuses_an_unconverged_run_and_marks_it_when_allowed(runs):
    dirs = {label: str(t.run_dir) for label, t in runs.items()}
    for call in (
        lambda **kw: compare(dirs, topk=5, **kw),
        lambda **kw: compute_similarity_matrix(dirs, "cosine", **kw),
        lambda **kw: topk_sets(dirs, topk=5, **kw),
    ):
        with pytest.raises(UnconvergedError, match="did not converge") as err:
            call()
        text = str(err.value)
        assert repr(BAD) in text and repr(GOOD) not in text  # names the run, only that one
        assert "collapsed at step 40" in text and "allow_unconverged=True" in text
    found = compare(dirs, topk=5, allow_unconverged=True)
    marked = BAD + MARK
    assert list(found.frame.index) == [marked, GOOD]
    assert set(found.topk_sets) == {marked, GOOD}
    assert list(found.unconverged) == [marked] and "collapsed" in found.unconverged[marked]
    assert found.frame.attrs["unconverged"] == [marked]
    frame = compute_similarity_matrix(dirs, "cosine", allow_unconverged=True)
    assert list(frame.index) == [marked, GOOD]
    assert set(topk_sets(dirs, topk=5, allow_unconverged=True)) == {marked, GOOD}
    clean = compare({GOOD: dirs[GOOD], "again": dirs[GOOD]}, topk=5)  # converged: as before
    assert list(clean.frame.index) == [GOOD, "again"] and clean.unconverged == {}


def test_a_loaded_model_is_checked_by_the_folder_it_came_from(runs):
    loaded = {label: GradiendModel.from_pretrained(t.run_dir) for label, t in runs.items()}
    with pytest.raises(UnconvergedError, match=repr(BAD)):
        compare(loaded, topk=5)


def test_figures_mark_the_unconverged_run(runs):
    pytest.importorskip("matplotlib")
    from gradiend.visualizer import plot_topk_overlap_heatmap, plot_topk_overlap_venn

    dirs = {label: str(t.run_dir) for label, t in runs.items()}
    with pytest.raises(UnconvergedError):
        plot_topk_overlap_heatmap(dirs, topk=5, show=False)
    heat = plot_topk_overlap_heatmap(dirs, topk=5, show=False, allow_unconverged=True)
    assert heat["data"]["labels"] == [BAD + MARK, GOOD]
    ticks = [t.get_text() for t in heat["figure"].axes[0].get_yticklabels()]
    assert ticks == [BAD + MARK, GOOD]
    venn = plot_topk_overlap_venn(dirs, topk=5, show=False, allow_unconverged=True)
    assert venn["data"]["labels"] == [BAD + MARK, GOOD]


def test_cross_encoding_refuses_and_marks_the_model_row(runs):
    with pytest.raises(UnconvergedError, match=repr(BAD)):
        compute_cross_encoding_matrix(runs, max_size=4)
    m = compute_cross_encoding_matrix(runs, max_size=4, allow_unconverged=True)
    assert list(m.index) == [BAD + MARK, GOOD] and list(m.columns) == [BAD, GOOD]
    assert m.attrs["unconverged"] == [BAD + MARK]
    assert abs(m.loc[GOOD, GOOD]) > 0.5  # the converged run still encodes its own feature


# ---------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def config(collapsing, tmp_path_factory):  # noqa: F811
    """A run config on the planted collapse (the model and the rows saved as files)."""
    tmp = tmp_path_factory.mktemp("cli")
    model, tok = collapsing
    model.save_pretrained(tmp / "tiny")
    tok.save_pretrained(tmp / "tiny")
    frames = [df.assign(label=cls, label_class=cls)[["masked", "label", "label_class"]]
              for cls, df in he_she_data(60).items()]  # fmt: skip
    pd.concat(frames).to_csv(tmp / "rows.csv", index=False)
    cfg = {
        "trainer": {
            "model": str(tmp / "tiny"),
            "run_id": "cli_run",
            "data": str(tmp / "rows.csv"),
            "target_classes": ["he", "she"],
        },  # fmt: skip
        "training_args": {
            "experiment_dir": str(tmp / "runs"),
            "train_batch_size": 4,
            "max_steps": 80,
            "eval_steps": 20,
            "learning_rate": 1e-2,
            "max_seeds": 1,
            "auto_remedy": False,
            "plot_importance": False,
        },
        "evaluate_encoder": {"max_size": 5},
        "evaluate_decoder": {
            "target_class": "she",
            "lrs": [1.0, 0.1],
            "max_size_training_like": 4,
            "max_size_neutral": 4,
        },  # fmt: skip
        "rewrite_base_model": {"target_class": "she"},
    }
    path = tmp / "run.json"
    path.write_text(json.dumps(cfg))
    return path


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_stages_refuse_an_unconverged_run_unless_allowed(config, capsys):
    run_dir = config.parent / "runs" / "cli_run"
    code, out, _ = _cli(capsys, "train", "-c", config, "--no-plot", "--allow-unconverged")
    assert code == 0 and "converged: False" in out
    assert "NOT CONVERGED (allowed by --allow-unconverged)" in out and "collapsed" in out
    code, _, err = _cli(capsys, "train", "-c", config, "--no-plot")  # the saved run, refused
    assert code == 1 and "not converged" in err and "--allow-unconverged" in err
    assert "It is saved" in err and (run_dir / "model" / "config.json").is_file()
    for argv in (("evaluate", "--encoder-only", "--no-plot"), ("rewrite",)):
        code, _, err = _cli(capsys, argv[0], "-c", config, *argv[1:])
        assert code == 1, argv
        assert "did not converge" in err and "collapsed at step 40" in err
        assert "--allow-unconverged" in err  # the command line's opt-in, not only the API's
    code, out, _ = _cli(capsys, "evaluate", "-c", config, "--no-plot", "--allow-unconverged")
    assert code == 0 and "test correlation" in out and "decoder she" in out
    code, out, _ = _cli(capsys, "rewrite", "-c", config, "--allow-unconverged")
    assert code == 0 and (run_dir / "she_rewritten" / "config.json").is_file()


def test_cli_compare_and_report_refuse_an_unconverged_run_unless_allowed(runs, tmp_path, capsys):
    dirs = [runs[BAD].run_dir, runs[GOOD].run_dir]
    code, _, err = _cli(capsys, "compare", *dirs, "--topk", "5")
    assert code == 1 and "did not converge" in err and "--allow-unconverged" in err
    code, out, _ = _cli(capsys, "compare", *dirs, "--topk", "5", "--allow-unconverged")
    assert code == 0 and f"NOT CONVERGED: {BAD}{MARK}: collapsed at step 40" in out
    page = tmp_path / "cmp.html"
    code, _, err = _cli(capsys, "report", *dirs, "-o", page)
    assert code == 1 and "did not converge" in err and not page.exists()
    pytest.importorskip("matplotlib")
    code, _, _ = _cli(capsys, "report", *dirs, "-o", page, "--allow-unconverged")
    assert code == 0 and f"{BAD}{MARK}" in page.read_text(encoding="utf-8")
