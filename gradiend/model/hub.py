"""GRADIENDs on the Hugging Face hub: a generated model card, ``push_to_hub``, and loading
``from_pretrained("org/name")`` through ``huggingface_hub``'s download and cache.

Every saved GRADIEND folder carries its card as ``README.md`` (written by ``save_pretrained``), so
it is ready to upload as it is. ``from_pretrained`` takes a local folder first and otherwise a
hub repository id, which ``snapshot_download`` resolves from the local cache (and, unless
``HF_HUB_OFFLINE=1``, the network).
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradiend import run_layout
from gradiend._io import read_json
from gradiend.data.hub import not_found_error

if TYPE_CHECKING:
    from gradiend.model.gradiend import GradiendModel

logger = logging.getLogger(__name__)

CARD = run_layout.CARD
HUB_FILES = ["*.json", "*.safetensors", CARD]
_REPO_ID = re.compile(r"^[\w.\-]+/[\w.\-]+$")


# --------------------------------------------------------------------------- loading
def is_repo_id(name: str) -> bool:
    """``org/name`` shaped and not an existing local path."""
    return bool(_REPO_ID.match(str(name))) and not Path(str(name)).exists()


def resolve_pretrained(
    path: str | Path,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
) -> Path:
    """A local folder for ``path``: the path itself when it exists, else the hub snapshot of the
    repository id ``path`` (downloaded into, or found in, the hub cache)."""
    if not isinstance(path, (str, Path)):
        raise TypeError(
            "a GRADIEND is loaded from a folder (a run folder or its model/ folder) or a hub id; "
            f"got a {type(path).__name__} (a base model goes to base_model=)"
        )
    if Path(path).exists() or not is_repo_id(str(path)):
        return Path(path)
    # heavy, and needed only for a hub id: huggingface_hub loads on the first download
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            str(path),
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            allow_patterns=HUB_FILES,
        )
    except (LocalEntryNotFoundError, HfHubHTTPError) as err:  # offline, unreachable, no repo
        raise not_found_error("GRADIEND", str(path), err, noun="GRADIEND") from err
    logger.info("GRADIEND %s resolved to %s", path, folder)
    return Path(folder)


# --------------------------------------------------------------------------- pushing
def push_folder(
    folder: str | Path,
    repo_id: str,
    token: str | bool | None = None,
    private: bool | None = None,
    commit_message: str = "Upload GRADIEND",
    revision: str | None = None,
) -> str:
    """Create ``repo_id`` if needed and upload ``folder``; returns the commit URL."""
    from huggingface_hub import HfApi  # optional path: huggingface_hub upload

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=commit_message,
        revision=revision,
    )
    url = str(getattr(info, "commit_url", info))
    logger.info("pushed %s to %s", folder, url)
    return url


class GradiendHubMixin:
    """``push_to_hub`` and ``model_card`` for ``GradiendModel``."""

    def model_card(
        self: GradiendModel, training: dict | None = None, repo_id: str | None = None
    ) -> str:
        """The model card (markdown with YAML front matter) that ``save_pretrained`` writes."""
        if training is None:
            training = _training_beside(getattr(self, "source_dir", None))
        return model_card(self, training, repo_id)

    def push_to_hub(
        self: GradiendModel,
        repo_id: str,
        *,
        token: str | bool | None = None,
        private: bool | None = None,
        commit_message: str = "Upload GRADIEND",
        revision: str | None = None,
    ) -> str:
        """Save to a temporary folder (weights, config, card, and the training record when the
        model was loaded from a run) and upload it to ``repo_id``; returns the commit URL."""
        extra = _extra_files(getattr(self, "source_dir", None))
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "gradiend"
            self.save_pretrained(folder, extra_files=extra)
            card = model_card(self, extra.get(run_layout.TRAINING), repo_id)
            (folder / CARD).write_text(card, encoding="utf-8")
            return push_folder(folder, repo_id, token, private, commit_message, revision)


def _extra_files(source_dir: Path | None) -> dict[str, Any]:
    """JSON files saved beside the weights of a loaded model (training record, context)."""
    if source_dir is None:
        return {}
    out = {}
    for name in (run_layout.TRAINING, run_layout.CONTEXT):
        if (Path(source_dir) / name).is_file():
            out[name] = read_json(Path(source_dir) / name)
    return out


def _training_beside(source_dir: Path | None) -> dict | None:
    return _extra_files(source_dir).get(run_layout.TRAINING)


# --------------------------------------------------------------------------- the card
def model_card(
    model: GradiendModel, training: dict | None = None, repo_id: str | None = None
) -> str:
    """Markdown card: base model, classes, parameters covered, pruning, metrics, how to load.

    ``training`` is the run's ``training.json`` record (metrics and pruning settings come from
    it); ``repo_id`` fills the loading example (a placeholder otherwise)."""
    meta = model.metadata
    base = meta.get("base_model")
    classes = list(meta.get("target_classes") or [])
    training = training or {}
    args = training.get("training_args") or {}
    front = _front_matter(base)
    title = " vs ".join(classes) if classes else "a feature"
    repo = repo_id or "ORG/NAME"
    lines = [
        *front,
        "",
        f"# GRADIEND: {title}" + (f" in {_short(base)}" if base else ""),
        "",
        "A [GRADIEND](https://github.com/aieng-lab/gradiend) — a one-neuron autoencoder over the "
        "base model's gradients. Its encoder reads a feature from a gradient (the two classes "
        "encode to about +1 and −1, neutral text to about 0); its decoder gives the direction "
        "in parameter space that, added to the base model, strengthens one class.",
        "",
        "| | |",
        "| --- | --- |",
        f"| base model | {_code(base) if base else 'not recorded'} |",
        f"| classes | {_classes(classes)} |",
        f"| source → target | {meta.get('source', 'alternative')} → {meta.get('target', 'diff')} |",
        f"| prediction objective | {meta.get('prediction_objective', 'auto')} |",
        f"| parameters covered | {_coverage(model)} |",
        f"| pruning | {_pruning(args, model)} |",
        f"| architecture | latent {model.latent_dim}, encoder {model.activation_encoder}, "
        f"decoder {model.activation_decoder}, {str(model.W_e.dtype).replace('torch.', '')} |",
        "",
        "## Metrics",
        "",
        *_metrics(training),
        "",
        "## Parameters covered",
        "",
        *_param_table(model),
        "",
        "## How to load",
        "",
        "```python",
        "from gradiend import GradiendModel, ModelWithGradiend",
        "",
        f'gradiend = GradiendModel.from_pretrained("{repo}")  # the weights only',
        f'mwg = ModelWithGradiend.from_pretrained("{repo}")  # with its base model',
        *_usage(classes),
        "```",
        "",
        "The sign convention: `decoder(+1)` strengthens the first class, `decoder(−1)` the second.",
        "",
    ]
    return "\n".join(lines)


def _front_matter(base: Any) -> list[str]:
    """The card's YAML header: library, tags and (for a hub model) the base model."""
    front = ["---", "library_name: gradiend", "tags:", "- gradiend", "- model-editing"]
    if base and is_repo_id(str(base)):
        front.append(f"base_model: {base}")
    return [*front, "---"]


def _short(base: Any) -> str:
    return Path(str(base)).name if not is_repo_id(str(base)) else str(base)


def _code(x: Any) -> str:
    return f"`{x}`"


def _classes(classes: list[str]) -> str:
    if len(classes) < 2:
        return "not recorded"
    return f"`{classes[0]}` (encodes to +1, `decoder(+1)`), `{classes[1]}` (−1, `decoder(−1)`)"


def _coverage(model: GradiendModel) -> str:
    pmap = model.param_map
    if pmap is None:
        return f"{model.input_dim:,} dimensions (no parameter map)"
    d, total = model.input_dim, max(1, pmap.total_numel)
    return (
        f"{d:,} dimensions: {d / max(1, pmap.numel):.2%} of the {pmap.numel:,} scalars of "
        f"{len(pmap)} selected tensors ({d / total:.3%} of all {total:,} base parameters)"
    )


def _pruning(args: dict, model: GradiendModel) -> str:
    parts = []
    pre, post = args.get("pre_prune_config"), args.get("post_prune_config")
    if pre:
        parts.append(
            f"pre: top {pre.get('topk')} by `{pre.get('rule', 'label_signed_mean')}` of "
            f"{pre.get('n_samples')} `{pre.get('source')}` gradients"
        )
    if post:
        parts.append(f"post: top {post.get('topk')} by `{model.resolve_part(post.get('part'))}`")
    if not parts:
        parts.append("none" if model.indices is None else "pruned (settings not recorded)")
    return "; ".join(parts)


def _metrics(training: dict) -> list[str]:
    best = training.get("best_score_checkpoint") or {}
    conv = training.get("convergence_info") or {}
    rows = []
    if best:
        rows.append(
            f"| validation correlation | {_num(best.get('correlation'))} at step "
            f"{best.get('global_step')} |"
        )
    means = (training.get("best") or {}).get("mean_by_class") or {}
    if means:
        rows.append(
            "| mean encoding by class | "
            + ", ".join(f"{k}: {_num(v)}" for k, v in means.items())
            + " |"
        )
    if conv:
        rows.append(
            f"| converged | {conv.get('converged')} ({conv.get('convergent_count')} convergent "
            f"seed(s), threshold {conv.get('threshold')}) |"
        )
    seeds = training.get("seeds") or []
    if seeds:
        rows.append(f"| seeds tried | {', '.join(str(s.get('seed')) for s in seeds)} |")
    args = training.get("training_args") or {}
    if args:
        rows.append(
            f"| training | {args.get('max_steps')} max steps, learning rate "
            f"{args.get('learning_rate')}, batch {args.get('train_batch_size')} |"
        )
    if not rows:
        return ["No training record was saved with this GRADIEND."]
    return ["| metric | value |", "| --- | --- |", *rows]


def _num(x: Any) -> str:
    try:
        return f"{float(x):.3f}"
    except (TypeError, ValueError):
        return str(x)


def _param_table(model: GradiendModel, limit: int = 25) -> list[str]:
    pmap = model.param_map
    if pmap is None:
        return ["No parameter map."]
    if model.indices is None:
        counts = [s.numel for s in pmap.specs]
    else:
        counts = [len(x) for x in pmap.split_indices(model.indices.sort().values)]
    rows = sorted(zip(pmap.specs, counts, strict=True), key=lambda r: -r[1])
    rows = [r for r in rows if r[1] > 0]
    out = ["| parameter | shape | dimensions kept |", "| --- | --- | --- |"]
    for spec, n in rows[:limit]:
        out.append(f"| `{spec.name}` | {list(spec.shape)} | {n:,} of {spec.numel:,} |")
    if len(rows) > limit:
        out.append(f"| … {len(rows) - limit} more | | |")
    return out


def _usage(classes: list[str]) -> list[str]:
    if len(classes) < 2:
        return []
    c = classes[1]
    return [
        "",
        f"# steer the live model towards {c!r} (restored on exit)",
        f'with mwg.steer(target_class="{c}", strength=0.5):',
        '    print(mwg.generate("The doctor said that"))',
        "# or save a rewritten copy of the base model",
        "model = mwg.rewrite_base_model(learning_rate=0.5, feature_factor=-1.0)",
    ]
