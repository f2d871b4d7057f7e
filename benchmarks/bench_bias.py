"""Debiasing SmolLM2 with the Ding he/she GRADIEND, judged by the bias benchmarks (issue 27's goals).

A he/she GRADIEND is trained on SmolLM2-135M from the Ding dictionary's English sentences
(``bench_validity``'s data and arguments); the decoder evaluation selects three rewrites —
``objective="balance"`` (the ``"balanced"`` entry; balanced on ``gradiend.data.neutral_templates``,
occupation sentences whose context does not decide the pronoun, or with ``--balance test`` on
the run's test rows), strengthen *she*, strengthen *he* — each
saved and scored with ``trainer.evaluate_bias`` against the base model (scored once, cached).
Printed per model: the WinoBias pro-stereotype share and P(he-form) share (share of WinoBias
pairs whose he/him/his sentence scores higher), the neutral NLL change the decoder evaluation
reports (selection and held-out texts), StereoSet SS/LMS/ICAT and CrowS-Pairs (gender and
overall), every score with its bootstrap 95 % interval, and the time of scoring each suite.

Goals: the balanced rewrite moves the WinoBias pro-stereotype share from 55.6 % to <= 52 %
with the P(he-form) share in 0.45–0.55 and neutral NLL +<= 1 %; the suites on SmolLM2 in
<= 5 minutes on a 2-core CPU.

    .venv/bin/python benchmarks/bench_bias.py                       # every row of each suite
    .venv/bin/python benchmarks/bench_bias.py --max-items 120 --steps 30 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_validity import STUDIES, build_data, make_trainer  # noqa: E402
from corpora import DING, ding_english_sentences  # noqa: E402

from gradiend.cli_bias import table_lines  # noqa: E402
from gradiend.data import neutral_templates  # noqa: E402
from gradiend.evaluator.bias import (  # noqa: E402
    BiasConfig,
    load_crows,
    load_stereoset,
    load_suites,
    sentence_scores,
)
from gradiend.evaluator.bias.bootstrap import mean_score, preference  # noqa: E402
from gradiend.lm.loading import load_base_model  # noqa: E402
from gradiend.lm.objectives import MASK  # noqa: E402

HE_FORMS = {"he", "him", "his", "himself"}
REWRITES = (("balanced", {"objective": "balance"}, "balanced"),
            ("strengthen-she", {"target_class": "she"}, "she"),
            ("strengthen-he", {"target_class": "he"}, "he"))  # fmt: skip


def _has_he(text: str) -> bool:
    return any(w.strip(".,;:!?\"'").lower() in HE_FORMS for w in text.split())


def he_share(model, tokenizer, pairs) -> dict:
    """% of WinoBias pairs whose he-form sentence (pro or anti) scores higher, with interval,
    and the floor of a uniform he/she shift (``shift_floor``)."""
    he_first = [(p.pro, p.anti) if _has_he(p.pro) else (p.anti, p.pro) for p in pairs]
    s = sentence_scores(model, tokenizer, [("", a) for a, _ in he_first]
                        + [("", b) for _, b in he_first])  # fmt: skip
    n = len(pairs)
    he_is_pro = np.array([_has_he(p.pro) for p in pairs])
    return {**mean_score(preference(s[:n], s[n:])).to_dict(),
            "shift_floor": shift_floor(np.asarray(s[:n] - s[n:]), he_is_pro)}  # fmt: skip


def shift_floor(d: np.ndarray, he_is_pro: np.ndarray) -> dict:
    """The lowest pro-stereotype % that adding one constant δ to every pair's he-minus-she
    log-likelihood reaches with the P(he-form) share inside 45–55 %: what a rewrite that moves
    *he* against *she* uniformly, whatever the occupation, can do at best."""
    best = None
    for delta in np.concatenate([[0.0], -d, -d - 1e-6, -d + 1e-6]):
        he = d + delta > 0
        share = 100 * he.mean()
        if 45 <= share <= 55:
            pro = 100 * (he == he_is_pro).mean()
            if best is None or pro < best["pro"]:
                best = {"pro": float(pro), "he_share": float(share), "delta": float(delta)}
    return best or {}


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def suite_data(a: argparse.Namespace) -> dict:
    """The gender rows of CrowS-Pairs and StereoSet (the issue's figures), or every row."""
    if a.all_types:
        return {}
    data = {}
    if "crows" in a.suites:
        data["crows"] = [p for p in load_crows() if p.bias_type == "gender"]
    if "stereoset" in a.suites:
        data["stereoset"] = [it for it in load_stereoset() if it.bias_type == "gender"]
    return data


def score_model(tr, label: str, model, a, wino) -> dict:
    """``trainer.evaluate_bias`` against the base model, plus the P(he-form) share."""
    t = time.perf_counter()
    kw = {"suites": tuple(a.suites), "max_items": a.max_items, "use_cache": True,
          "data": suite_data(a)}  # fmt: skip
    res = tr.evaluate_bias(model=model, **kw) if model is not None else tr.evaluate_bias(**kw)
    lm = load_base_model(model) if model is not None else tr._base()
    share = he_share(lm.model, lm.tokenizer, wino) if wino else None
    print(f"[{label}] scored in {time.perf_counter() - t:.0f} s (load {_load()})", flush=True)
    return {"result": res, "he_share": share}


def run(a: argparse.Namespace, work: Path) -> dict:
    t0 = time.perf_counter()
    study = STUDIES["he_she"]
    data, neutral = build_data(study, ding_english_sentences(), a.per_class, a.neutral)
    print(f"data {({k: len(v) for k, v in data.items()})}, {len(neutral)} neutral "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    tr = make_trainer(study, data, neutral, work, a)
    t = time.perf_counter()
    tr.train()
    stats = tr.get_training_stats()
    converged = bool(stats.get("convergence_info", {}).get("converged"))
    print(f"train {time.perf_counter() - t:.0f} s: {stats.get('convergence_status')}", flush=True)
    cfg = BiasConfig(suites=tuple(a.suites), max_items=a.max_items, data=suite_data(a))
    print(f"suite items: { ({k: len(v) for k, v in load_suites(cfg).items()}) }", flush=True)
    wino = load_suites(cfg).get("winobias", [])
    out = {"converged": converged, "models": {}}
    out["models"]["base"] = score_model(tr, "base", None, a, wino)
    for label, kw, key in REWRITES:
        if label not in a.rewrites:
            continue
        if key == "balanced":
            kw = {"objective": a.objective}
            if a.balance == "templates":  # else: the run's test rows
                kw["balance_data"] = neutral_templates(MASK, n=a.balance_n, seed=0)
        t = time.perf_counter()
        dec = tr.evaluate_decoder(max_size_neutral=a.neutral, max_size_training_like=a.rows,
                                  allow_unconverged=not converged, **kw)  # fmt: skip
        s = dec[key]
        print(f"[{label}] decoder {time.perf_counter() - t:.0f} s: ff={s['feature_factor']} "
              f"η={s['learning_rate']:.4g} NLL {100 * s['nll_increase']:+.2f} % (held-out "
              f"{100 * (s.get('heldout_nll_increase') or 0):+.2f} %)", flush=True)  # fmt: skip
        folder = work / f"{key}_model"
        tr.rewrite_base_model(decoder_results=dec, target_class=key, output_dir=folder,
                              allow_unconverged=not converged)  # fmt: skip
        found = score_model(tr, label, folder, a, wino)
        found["decoder"] = {k: s.get(k) for k in ("feature_factor", "learning_rate", "nll_increase",
                                                  "heldout_nll_increase", "lms", "base_lms")}  # fmt: skip
        out["models"][label] = found
    out["seconds"] = time.perf_counter() - t0
    return out


def _cell(s: dict | None) -> str:
    return "—" if s is None else f"{s['value']:6.2f} [{s['low']:6.2f}, {s['high']:6.2f}]"


def _floor(x: dict | None) -> str:
    return "—" if not x else f"pro {x['pro']:.1f} % at he {x['he_share']:.1f} %"


def _get(res: dict, *keys: str):
    for k in keys:
        res = res.get(k) if isinstance(res, dict) else None
    return res


ROWS = (("WinoBias pro %", ("winobias", "overall", "score")),
        ("StereoSet SS", ("stereoset", "overall", "ss")),
        ("StereoSet LMS", ("stereoset", "overall", "lms")),
        ("StereoSet ICAT", ("stereoset", "overall", "icat")),
        ("StereoSet SS gender", ("stereoset", "gender", "ss")),
        ("CrowS overall", ("crows", "overall", "score")),
        ("CrowS gender", ("crows", "gender", "score")))  # fmt: skip


def summary(found: dict) -> list[str]:
    models = found["models"]
    lines = [f"{'':22s}" + "".join(f"{m:>28s}" for m in models)]
    for name, path in ROWS:
        cells = [_cell(_get(f["result"]["scores"]["suites"], *path)) for f in models.values()]
        lines.append(f"{name:22s}" + "".join(f"{c:>28s}" for c in cells))
    lines.append(f"{'P(he-form) %':22s}" + "".join(f"{_cell(f['he_share']):>28s}"
                                                   for f in models.values()))  # fmt: skip
    nll = [f.get("decoder", {}).get("nll_increase") for f in models.values()]
    held = [f.get("decoder", {}).get("heldout_nll_increase") for f in models.values()]
    floors = [(f["he_share"] or {}).get("shift_floor") for f in models.values()]
    lines.append(f"{'uniform-shift floor':22s}" + "".join(f"{_floor(x):>28s}" for x in floors))
    lines.append(f"{'neutral NLL change':22s}" + "".join(
        f"{'—' if x is None else f'{100 * x:+.2f} % (ho {100 * (h or 0):+.2f} %)':>28s}"
        for x, h in zip(nll, held, strict=True)))  # fmt: skip
    base = models["base"]["result"]["scores"]["seconds"]
    lines.append("scoring seconds (base): " + ", ".join(f"{k} {v:.0f}" for k, v in base.items())
                 + f"; total {sum(base.values()):.0f} s (goal <= 300 s)")  # fmt: skip
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-items", type=int, default=None, help="seeded sample per suite")
    ap.add_argument("--suites", nargs="+", default=["crows", "stereoset", "winobias"],
                    choices=["crows", "stereoset", "winobias", "seat"])  # fmt: skip
    ap.add_argument("--all-types", action="store_true",
                    help="every bias type of CrowS-Pairs and StereoSet (default: gender rows)")  # fmt: skip
    ap.add_argument("--per-class", type=int, default=200, help="Ding training rows per class")
    ap.add_argument("--neutral", type=int, default=100, help="neutral texts (NLL budget)")
    ap.add_argument("--rows", type=int, default=None, help="decoder rows per class")
    ap.add_argument("--steps", type=int, default=30, help="training steps")
    ap.add_argument("--all-layers", action="store_true", help="train on the whole model")
    ap.add_argument("--balance", choices=["templates", "test"], default="templates",
                    help="balance sentences: gradiend.data.neutral_templates or the test rows")  # fmt: skip
    ap.add_argument("--objective", choices=["balance", "parity"], default="parity",
                    help="the balanced rewrite's objective (BPI x LMS, or the shares' parity)")  # fmt: skip
    ap.add_argument("--balance-n", type=int, default=64, help="template sentences to balance on")
    ap.add_argument("--rewrites", nargs="+", default=[r[0] for r in REWRITES],
                    choices=[r[0] for r in REWRITES])  # fmt: skip
    ap.add_argument("--work", default=None, help="keep the run here (default: a temp folder)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if not DING.exists():
        sys.exit(f"{DING} is missing: apt-get install trans-de-en (scripts/install.sh)")
    print(f"load {Path('/proc/loadavg').read_text().strip()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        found = run(a, Path(a.work or tmp))
    for label, f in found["models"].items():
        if label != "base":
            print(f"--- {label} vs base")
            print("\n".join(table_lines(f["result"], only=("overall", "gender"))))
    print("\n".join(summary(found)))
    print(f"total {found['seconds']:.0f} s; load {Path('/proc/loadavg').read_text().strip()}")
    if a.json:
        Path(a.json).write_text(json.dumps(found, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
