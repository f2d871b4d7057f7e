"""Run-cache fingerprints: everything that changes a result, compared field by field."""

from __future__ import annotations

import logging

import pandas as pd

from gradiend.trainer.arguments import TrainingArguments

logger = logging.getLogger(__name__)

# fields that do not change the trained GRADIEND
_IGNORED = {
    "experiment_dir", "output_dir", "use_cache", "eval_batch_size", "fail_on_non_convergence",
    "decoder_eval_max_size_training_like", "decoder_eval_max_size_neutral", "decoder_eval_lrs",
    "decoder_eval_feature_factors", "do_eval", "gradient_cache_max_gb", "metadata",
}


def data_hash(df: pd.DataFrame) -> str:
    cols = [c for c in ("masked", "factual", "alternative", "factual_class", "alternative_class",
                        "split", "mask_labels") if c in df.columns]
    values = pd.util.hash_pandas_object(df[cols].astype(str), index=False).to_numpy()
    return format(int(pd.util.hash_array(values).sum() % (1 << 63)), "x")


def training_fingerprint(args: TrainingArguments, model: dict, data: str, targets: list[str]) -> dict:
    fp = {k: v for k, v in args.to_dict().items() if k not in _IGNORED}
    fp.update({"base_model": model, "data_sha": data, "target_classes": list(targets)})
    return _jsonable(fp)


def _jsonable(value):
    import json

    return json.loads(json.dumps(value, default=str))


def diff_fingerprint(old: dict | None, new: dict) -> list[str]:
    """Names of the fields that differ (empty list: the cache may be used)."""
    if old is None:
        return ["<no fingerprint stored>"]
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]
