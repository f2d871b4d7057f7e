"""compare_methods: GRADIEND, ACTIEND and CAA on the planted causal model under one budget, each
effect recomputed from the saved and reloaded model; bad input refused before any work."""

from __future__ import annotations

import json
import logging
import math

import pytest
from conftest import fast_args, he_she_data, neutral_texts

from gradiend import MethodComparison, compare_methods
from gradiend.evaluator.methods_table import METHODS_RESULTS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def comparison(planted, tmp_path_factory):
    model, tok = planted["clm"]
    root = tmp_path_factory.mktemp("methods")
    result = compare_methods(
        (model, tok), he_she_data(), ["he", "she"], args=fast_args(root),
        actiend_layers=[0, -1], eval_neutral_data=neutral_texts(40), experiment_dir=root,
    )  # fmt: skip
    return result, root


def test_table_has_every_method_and_its_columns(comparison):
    result, _ = comparison
    table = result.table
    assert list(table.index) == ["gradiend", "actiend", "caa"]
    for col in ("encoder_test_abs_r", "encoder_neutral_mean", "probability", "nll_increase",
                "lms_change", "seconds", "peak_memory_mb", "recompute_rel_diff"):  # fmt: skip
        assert col in table.columns
    assert math.isnan(table.loc["caa", "encoder_test_abs_r"])
    assert math.isnan(table.loc["caa", "encoder_neutral_mean"])
    for m in ("gradiend", "actiend"):
        assert table.loc[m, "encoder_test_abs_r"] > 0.9
    for m in table.index:
        row = table.loc[m]
        assert row["probability"] > row["base_probability"]  # each steers towards she
        assert row["nll_increase"] <= 0.01 and row["seconds"] > 0
    assert table.loc["actiend", "sites"] in ("model.layers.0", "model.layers.1")
    by_layer = result.rows[1]["validation_abs_r_by_layer"]  # the layer is picked on these
    assert set(by_layer) == {"0", "-1"} and all(0 <= r <= 1 for r in by_layer.values())
    md = result.to_markdown()
    assert md.count("\n") == 4 and "| caa | " in md and "—" in md.split("| caa |")[1]


def test_recomputed_effect_from_the_reloaded_model_matches(comparison):
    result, _ = comparison
    for row in result.rows:
        assert row["recomputed_probability"] == pytest.approx(row["probability"], rel=1e-4)
        assert abs(row["recompute_rel_diff"]) < 1e-4


def test_comparison_is_saved_and_reloads(comparison):
    result, root = comparison
    path = root / "methods" / METHODS_RESULTS
    saved = json.loads(path.read_text())
    assert [r["method"] for r in saved["rows"]] == ["gradiend", "actiend", "caa"]
    assert saved["rows"][2]["encoder_test_abs_r"] is None
    again = MethodComparison.load(path.parent)
    assert again.to_markdown() == result.to_markdown()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"methods": ("gradiend", "leace")}, "unknown method"),
        ({"methods": ()}, "unknown method"),
        ({"target_classes": ["he"]}, "two classes"),
        ({"target_classes": ["he", "he"]}, "must differ"),
        ({"actiend_layers": []}, "at least one layer"),
        ({"target_class": "it"}, "not one of the target classes"),
    ],
)
def test_bad_input_is_refused_before_any_work(tmp_path, kwargs, match):
    call = {"model": "no/such-model", "data": he_she_data(), "target_classes": ["he", "she"],
            "experiment_dir": tmp_path, **kwargs}  # fmt: skip
    with pytest.raises(ValueError, match=match):
        compare_methods(**call)
    assert not any(tmp_path.iterdir())  # nothing written, no model loaded


def test_report_shows_the_saved_comparison(comparison, tmp_path):
    from gradiend.report import write_report

    result, root = comparison
    run = result.row("gradiend")["run_dir"]
    page = write_report(run, output=tmp_path / "report.html").read_text()
    section = page.split("<h2>Methods side by side</h2>")[1]
    assert all(f"<td>{m}</td>" in section for m in ("gradiend", "actiend", "caa"))


def test_cli_compares_methods_on_a_saved_tiny_model(planted, tmp_path, capsys):
    from gradiend import cli

    model, tok = planted["clm"]
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    files = []
    for cls, df in he_she_data().items():
        files.append(tmp_path / f"training_{cls}.csv")
        df.to_csv(files[-1], index=False)
    (tmp_path / "neutral.txt").write_text("\n".join(neutral_texts(40)))
    argv = ["compare-methods", str(tmp_path / "base"), "--data", *map(str, files),
            "--classes", "he", "she", "--neutral", str(tmp_path / "neutral.txt"),
            "--methods", "actiend", "caa", "--max-steps", "120", "--batch-size", "4",
            "--experiment-dir", str(tmp_path / "runs")]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "| actiend |" in out and "| caa |" in out and "strongest inside the budget" in out
    assert "not converged" not in out
    saved = MethodComparison.load(tmp_path / "runs" / "methods")
    assert [r["method"] for r in saved.rows] == ["actiend", "caa"]
    assert cli.main([*argv[:-2], "--methods", "leace"]) == 2  # refused before any work


@pytest.fixture(scope="module")
def unconverged(planted, tmp_path_factory):
    """A comparison whose GRADIEND cannot reach its convergence threshold (|r| > 1 is
    impossible) and no remedy is tried: it must still be compared, marked, and not preferred."""
    model, tok = planted["clm"]
    root = tmp_path_factory.mktemp("methods_unconverged")
    args = fast_args(root, max_steps=20, convergent_score_threshold=0.9999999, auto_remedy=False,
                     learning_rate=1e-9)  # fmt: skip
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    log = logging.getLogger("gradiend.trainer.methods")
    log.addHandler(handler)
    try:
        result = compare_methods(
            (model, tok), he_she_data(), ["he", "she"], args=args, actiend_layers=[-1],
            actiend_learning_rate=1e-9, eval_neutral_data=neutral_texts(40), experiment_dir=root,
        )  # fmt: skip
    finally:
        log.removeHandler(handler)
    return result, [r.getMessage() for r in records]


def test_unconverged_methods_are_compared_and_marked(unconverged):
    unconverged, _ = unconverged
    table = unconverged.table
    assert list(table.index) == ["gradiend", "actiend", "caa"]
    assert not table.loc["gradiend", "converged"]
    assert not table.loc["actiend", "converged"] and table.loc["caa", "converged"]
    assert "not converged" in table.loc["gradiend", "convergence"]
    for m in ("gradiend", "actiend"):  # evaluated anyway: encoder and decoder numbers exist
        assert not math.isnan(table.loc[m, "encoder_test_abs_r"])
        assert table.loc[m, "probability"] > 0
    lines = unconverged.to_markdown().splitlines()
    assert lines[2].startswith("| gradiend (not converged) |")
    assert lines[3].startswith("| actiend (not converged) |") and lines[4].startswith("| caa |")
    again = MethodComparison.from_dict(json.loads(json.dumps(unconverged.to_dict())))
    assert [r["converged"] for r in again.rows] == [False, False, True]


def test_best_prefers_a_converged_method(unconverged):
    rows = [dict(r) for r in unconverged[0].rows]
    for r in rows:
        r["passed"] = True
    rows[0]["probability"] = 0.99  # the unconverged GRADIEND has the strongest effect
    cmp = MethodComparison(rows, ["he", "she"], "she")
    assert cmp.best()["method"] == "caa"
    assert "caa" in cmp.summary() and "not converged: gradiend, actiend" in cmp.summary()
    for r in rows:
        r["converged"] = False  # none converged: the strongest, said to be unconverged
    cmp = MethodComparison(rows, ["he", "she"], "she")
    assert cmp.best()["method"] == "gradiend" and "NOT converged" in cmp.summary()


def test_an_unconverged_method_is_named_in_a_warning(unconverged):
    _, warnings = unconverged
    assert any("gradiend did not converge" in m for m in warnings)
    assert any("actiend did not converge" in m for m in warnings)
