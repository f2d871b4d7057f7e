"""One process of the distributed tests (``tests/test_distributed.py`` starts it, alone or as
one of several gloo ranks): a whole planted-feature run, a suite of runs, or a rank that dies.

Usage: ``python dist_worker.py MODE MODEL_DIR EXPERIMENT_DIR OUT_JSON``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)

from conftest import fast_args, he_she_data, neutral_texts  # noqa: E402

from gradiend import TextPredictionTrainer  # noqa: E402
from gradiend import distributed as dist  # noqa: E402
from gradiend.evaluator.cross import compute_cross_encoding_matrix  # noqa: E402
from gradiend.trainer import PrePruneConfig  # noqa: E402
from gradiend.trainer.gradient_data import GradientBatches  # noqa: E402

RANK = int(os.environ.get("RANK", "0"))


def trainer(model_dir: str, experiment_dir: str, run_id: str = "he_she", **overrides):
    args = dict(
        pre_prune_config=PrePruneConfig(n_samples=24, topk=0.3, batch_size=4),
        use_cache=os.environ.get("USE_CACHE", "1") == "1",
        max_steps=60,
        plot_importance=False,
        distributed_timeout_s=float(os.environ.get("DIST_TIMEOUT", "60")),
        # 32: validation by JVP passes (12 rows > 5 evaluations' passes); 4: per-row gradients
        eval_batch_size=int(os.environ.get("EVAL_BS", "32")),
    )
    args.update(overrides)
    return TextPredictionTrainer(
        model=model_dir,
        run_id=run_id,
        data=he_she_data(60),
        eval_neutral_data=neutral_texts(24),
        args=fast_args(experiment_dir, **args),
        progress=False,
    )


def full_run(model_dir: str, experiment_dir: str) -> dict:
    t = trainer(model_dir, experiment_dir)
    t.train()
    enc = t.evaluate_encoder(max_size=12)
    dec = t.evaluate_decoder(target_class="she", max_size_training_like=12, max_size_neutral=24)
    key = next(k for k in dec if k.startswith("she"))
    cross = compute_cross_encoding_matrix({"a": t}, max_size=12)
    t.rewrite_base_model(dec, "she", output_dir=Path(experiment_dir) / "she_rewritten")
    return {
        "cross": float(cross.loc["a", "a"]),
        "encoder": {k: enc[k] for k in ("correlation", "mean_by_feature_class")},
        "encoder_neutral": enc.get("neutral_mean_by_type"),
        "decoder": {k: dec[key][k] for k in ("learning_rate", "feature_factor", "value", "lms")},
        "n_points": len(dec["grid"]),
        "computed": t.get_training_stats()["base_passes"]["training_batches_computed"],
        "n_batches": t.get_training_stats()["n_training_batches"],
        "world": dist.world_size(),
        "distributed": t.get_training_stats().get("distributed"),
    }


def die_after(n: int) -> None:
    """Rank 1 exits (like a killed process) after computing ``n`` training batches."""
    original = GradientBatches._compute

    def compute(self, i):
        if self.computed >= n:
            os._exit(3)
        return original(self, i)

    GradientBatches._compute = compute


def hang() -> None:
    """Rank 1 gets stuck (not dead) in its first training batch."""

    def compute(self, i):
        time.sleep(600)

    GradientBatches._compute = compute


def suite(model_dir: str, experiment_dir: str) -> list:
    def one(seed: int) -> dict:
        t = trainer(model_dir, experiment_dir, f"suite_{seed}", seed=seed, pre_prune_config=None)
        t.train()
        return {"seed": seed, "rank": RANK, "model_dir": str(t.model_dir)}

    return dist.run_suite([0, 1, 2], one, timeout_s=60)


def main() -> None:
    mode, model_dir, experiment_dir, out = sys.argv[1:5]
    if mode == "train":  # train only: the GRADIEND and what training computed
        t = trainer(model_dir, experiment_dir)
        t.train()
        stats = t.get_training_stats()
        result = {"computed": stats["base_passes"]["training_batches_computed"],
                  "n_batches": stats["n_training_batches"], "distributed": stats.get("distributed")}  # fmt: skip
    elif mode == "hang":
        if RANK == 1:
            hang()
        result = full_run(model_dir, experiment_dir)
    elif mode == "die":
        if RANK == 1:
            die_after(2)
        result = full_run(model_dir, experiment_dir)
    elif mode == "suite":
        result = suite(model_dir, experiment_dir)
    else:
        result = full_run(model_dir, experiment_dir)
    if RANK == 0:
        Path(out).write_text(json.dumps(result))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
