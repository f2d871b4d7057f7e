"""How much of the he/she class an activation at the prediction position can carry at all.

On a causal LM the prediction position is the last token *before* the pronoun, so its hidden
state holds only what the prefix says about the class. This prints, on ``bench_methods.py``'s
data (the demo's and the Ding dictionary's he/she sentences) and at its three layers, the
held-out |r| between the class and:

* a ridge probe fitted on the standardised activations (5-fold, the best of four ridge
  strengths): an upper estimate of what any linear encoder of that activation can reach;
* the CAA direction (difference of the class means of the training folds);
* the base model's own log P(he) − log P(she) at that position (the final layer through the
  head), i.e. how well the prefix decides the pronoun for the model itself.

An ACTIEND's encoder is one linear map of this activation, so its test |r| cannot exceed the
probe's by much. A GRADIEND reads the gradient of the loss *of the target word*, which depends
on the word itself, and so reaches |r| ≈ 1 on the same rows.

    .venv/bin/python benchmarks/bench_actiend_ceiling.py [--per-class 60]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_methods import build_data  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from gradiend.demo import smollm2_path  # noqa: E402

LAYERS = (
    10,
    20,
    -1,
)  # as bench_methods.py; hidden_states[i + 1] is block i's output (-1: after the final norm)
RIDGE = (1e2, 1e3, 1e4, 1e5)
FOLDS = 5


def prefix_states(model, tok, texts: list[str]) -> dict[int, np.ndarray]:
    """Layer → ``[n, hidden]`` hidden states at the last prefix token (one forward a text)."""
    out = {layer: [] for layer in (*LAYERS, "final")}
    with torch.no_grad():
        for text in texts:
            ids = tok(text.split("[MASK]")[0].rstrip(), return_tensors="pt")
            hs = model(**ids, output_hidden_states=True).hidden_states
            n_blocks = len(hs) - 1
            for layer in LAYERS:
                out[layer].append(hs[(layer % n_blocks) + 1][0, -1].float().numpy())
            out["final"].append(hs[-1][0, -1].float().numpy())  # after the final norm
    return {k: np.stack(v) for k, v in out.items()}


def folds_r(x: np.ndarray, y: np.ndarray, fit) -> float:
    """Mean held-out correlation of ``fit(train_x, train_y)(test_x)`` with ``y`` over folds."""
    rs = []
    for k in range(FOLDS):
        test = np.arange(len(y)) % FOLDS == k
        score = fit(x[~test], y[~test])(x[test])
        rs.append(np.corrcoef(score, y[test])[0, 1])
    return float(abs(np.mean(rs)))


def ridge(lam: float):
    def fit(x, y):
        mu, sd = x.mean(0), x.std(0) + 1e-6
        z = (x - mu) / sd
        w = np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ y)
        return lambda t: ((t - mu) / sd) @ w

    return fit


def caa(x, y):
    d = x[y > 0].mean(0) - x[y < 0].mean(0)
    mu = 0.5 * (x[y > 0].mean(0) + x[y < 0].mean(0))
    return lambda t: (t - mu) @ d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=60, help="rows per class from each source")
    ns = ap.parse_args()
    t0 = time.perf_counter()
    data, _ = build_data(ns.per_class, 8)
    texts = [*data["he"]["masked"], *data["she"]["masked"]]
    y = np.array([1.0] * len(data["he"]) + [-1.0] * len(data["she"]))
    order = np.random.default_rng(0).permutation(len(y))  # folds mix the two classes
    texts, y = [texts[i] for i in order], y[order]
    path = Path(smollm2_path())
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    states = prefix_states(model, tok, texts)
    head = model.get_output_embeddings().weight.detach().float().numpy()
    he, she = tok(" he")["input_ids"][0], tok(" she")["input_ids"][0]
    logit_diff = states["final"] @ (head[he] - head[she])
    print(f"{len(y)} rows ({int((y > 0).sum())} he, {int((y < 0).sum())} she)")
    print(
        f"base model log P(he) - log P(she) at the position: |r| {abs(np.corrcoef(logit_diff, y)[0, 1]):.3f}"
    )
    print("| layer | ridge probe |r| (best λ) | CAA direction |r| |")
    print("|---|---|---|")
    for layer in LAYERS:
        x = states[layer]
        probe = max((folds_r(x, y, ridge(lam)), lam) for lam in RIDGE)
        print(f"| {layer} | {probe[0]:.3f} (λ={probe[1]:g}) | {folds_r(x, y, caa):.3f} |")
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
