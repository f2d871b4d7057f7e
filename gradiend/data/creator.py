"""``TextPredictionDataCreator``: raw text in, masked training data and neutral sentences out.

The argument names follow the incumbent package so its users' scripts keep working; the output
columns are the contract in docs/data-format.md.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gradiend._kwargs import strict_kwargs

from .cache import describe_data, fingerprint, load_cached
from .creator_base import DataCreator
from .filters import CompiledFilter, SpacyTagSpec, TextFilterConfig, filter_list, load_spacy
from .formats import (
    add_splits,
    balance_frames,
    check_ratios,
    per_class_frame,
    to_minimal,
    to_unified,
)
from .inputs import (
    DataInputError,
    check_creator_args,
    check_size,
    check_texts,
    check_training_args,
    check_word_list,
)
from .outcome import check_no_empty_class, untouched
from .output import check_format, frame_path, safe_name, write_frame, write_json
from .preprocess import TextPreprocessConfig, preprocess_texts
from .scan import ClassCollector, collect_neutral
from .sources import resolve_base_data
from .tag_check import check_excluded_tags, check_spacy_tags
from .tag_sample import TagSample, check_sample, sample_tags

logger = logging.getLogger(__name__)

_FORMATS = ("per_class", "unified", "minimal")


@strict_kwargs
class TextPredictionDataCreator(DataCreator):
    """Builds masked per-class training data and neutral data from a text corpus.

    ``base_data`` is a list of strings, a DataFrame, a .csv/.parquet/.txt path, a
    ``datasets.Dataset`` or a Hugging Face dataset id (with ``hf_config``/``split``).
    ``feature_targets`` lists one ``TextFilterConfig`` per class; filters with ``spacy_tags`` or
    ``use_lemma`` need ``spacy_model`` (a package name or a loaded ``spacy.Language``).
    After each generation ``creator.stats`` holds what was scanned, kept and excluded and why.
    Before the scan, ``tag_sample_size`` sentences per class with spaCy tags are parsed to check
    that the pipeline gives its words those tags (0: no check).
    """

    def __init__(
        self,
        base_data: Any = None,
        text_column: str = "text",
        base_max_size: int | None = None,
        split: str = "train",
        hf_config: str | None = None,
        preprocess: TextPreprocessConfig | None = None,
        spacy_model: Any = None,
        feature_targets: Sequence[TextFilterConfig] | TextFilterConfig | None = None,
        min_left_context_words: int = 10,
        seed: int = 42,
        output_dir: str | Path | None = None,
        output_format: str = "csv",
        training_basename: str = "training",
        neutral_basename: str = "neutral",
        use_cache: bool = False,
        split_group_col: str | None = None,
        batch_size: int = 256,
        progress: bool = True,
        tag_sample_size: int = 50,
    ) -> None:
        self.feature_targets = filter_list(self.expand_feature_targets(feature_targets))
        tagged = [str(f.id) for f in self.feature_targets if f.needs_spacy]
        if tagged and spacy_model is None:
            raise DataInputError(
                "spacy_model",
                f"filters {tagged} use spacy_tags/use_lemma but no spacy_model was given",
                "pass spacy_model='en_core_web_sm' (or another installed pipeline / a "
                "spacy.Language)",
            )
        self.text_column = text_column
        self.base_max_size = base_max_size
        self.split = split
        self.hf_config = hf_config
        self.preprocess = preprocess
        self.spacy_model_name = spacy_model if isinstance(spacy_model, str) else None
        self.min_left_context_words = min_left_context_words
        self.seed = seed
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.output_format = check_format(output_format)
        self.training_basename = training_basename
        self.neutral_basename = neutral_basename
        self.use_cache = use_cache
        self.split_group_col = split_group_col
        self.batch_size = batch_size
        self.progress = progress
        self.tag_sample_size = tag_sample_size
        self.base_data = base_data
        self.stats: dict[str, Any] = {}
        check_creator_args(self, self.feature_targets)
        check_texts(base_data, text_column)
        # Validate the source now (columns, files) and keep the stream for the first pass.
        self._stream: Iterator[str] | None = (
            self._resolve(base_data) if base_data is not None else None
        )
        self.nlp = load_spacy(spacy_model)
        check_spacy_tags(self.nlp, self.feature_targets)

    # ------------------------------------------------------------------ inputs
    def _resolve(self, base_data: Any) -> Iterator[str]:
        return resolve_base_data(
            base_data,
            text_column=self.text_column,
            split=self.split,
            hf_config=self.hf_config,
            base_max_size=self.base_max_size,
            seed=self.seed,
        )

    def _texts(self, base_data: Any = None) -> Iterator[str]:
        if base_data is not None:
            return self._resolve(base_data)
        if self.base_data is None:
            raise ValueError("No base_data: pass base_data to the creator or to this method")
        if self._stream is not None:
            stream, self._stream = self._stream, None
            return stream
        return self._resolve(self.base_data)

    def _sentences(self, base_data: Any, stats: Counter[str]) -> Iterator[str]:
        language = getattr(self.nlp, "lang", None)
        return preprocess_texts(self._texts(base_data), self.preprocess, stats, language)

    def _known_total(self, base_data: Any) -> int | None:
        """Number of sentences for the progress bar, when known without reading the data."""
        data = base_data if base_data is not None else self.base_data
        if self.preprocess is not None and self.preprocess.split_to_sentences is not False:
            return None
        try:
            n = len(data)
        except TypeError:
            return None
        if isinstance(data, (str, Path)):
            return None
        return min(n, self.base_max_size) if self.base_max_size else n

    def _compiled(self) -> list[CompiledFilter]:
        if not self.feature_targets:
            raise DataInputError(
                "feature_targets", "is empty", "pass TextFilterConfig(targets=[...]) per class"
            )
        return [CompiledFilter(f, self.min_left_context_words) for f in self.feature_targets]

    # ------------------------------------------------------------------ training data
    def generate_training_data(
        self,
        max_size_per_class: int | None = None,
        format: str = "per_class",
        balance: str | bool = "try",
        train_ratio: float = 0.8,
        validation_ratio: float = 0.1,
        test_ratio: float = 0.1,
        split_group_col: str | None = None,
        min_rows_per_class_for_split: int = 10,
        min_rows_per_target_for_balance: int = 1,
        raise_on_incomplete_classes: bool = False,
        output: str | Path | bool | None = None,
    ) -> dict[str, pd.DataFrame] | pd.DataFrame:
        """Scan the corpus once and return masked examples per class, with train/val/test splits.

        ``format``: ``"per_class"`` (dict of DataFrames), ``"unified"`` or ``"minimal"`` (one
        DataFrame) as in docs/data-format.md. Classes with fewer than
        ``min_rows_per_class_for_split`` rows are dropped with a warning naming them, or raise
        with ``raise_on_incomplete_classes``. ``output`` (a folder, ``True`` for ``output_dir``,
        ``False`` for none) says where files go; by default they go to ``output_dir`` if set.
        ``split_group_col`` (default: the creator's) makes held-out splits by that column's values.
        """
        split_group_col = split_group_col or self.split_group_col
        check_training_args(
            max_size_per_class, min_rows_per_class_for_split, min_rows_per_target_for_balance
        )
        if format not in _FORMATS:
            raise ValueError(f"format must be one of {_FORMATS}, got {format!r}")
        ratios = check_ratios(train_ratio, validation_ratio, test_ratio)
        balance_frames({}, balance, self.seed)  # validates the mode before scanning
        filters = self._compiled()
        out_dir = self._output_dir(output)
        params = {
            "max_size_per_class": max_size_per_class, "format": format, "balance": balance,
            "ratios": ratios, "split_group_col": split_group_col,
            "min_rows_per_class_for_split": min_rows_per_class_for_split,
            "min_rows_per_target_for_balance": min_rows_per_target_for_balance,
        }  # fmt: skip
        key = self._cache_key("training", params)
        cached = self._load_cached(out_dir, self.training_basename, key)
        if cached is not None:
            return cached if format == "per_class" else cached[format]

        collector, pre, sample = self._scan_classes(filters, max_size_per_class)
        check_no_empty_class(filters, collector.stats(), sample, out_dir, self.training_basename)
        frames = {cid: per_class_frame(rows, cid) for cid, rows in collector.rows.items()}
        frames = balance_frames(frames, balance, self.seed, min_rows_per_target_for_balance)
        complete, incomplete = self._split_complete(
            frames, ratios, min_rows_per_class_for_split, raise_on_incomplete_classes,
            split_group_col, out_dir,
        )  # fmt: skip
        stats = _training_stats(collector.stats(), pre, incomplete, complete, params, key)
        self.stats = stats
        self._log_training(stats)
        result = self._shape(complete, format)
        if out_dir is not None:
            self._write_training(out_dir, result, format, frames, incomplete, stats)
        return result

    def _scan_classes(
        self, filters: list[CompiledFilter], max_size_per_class: int | None
    ) -> tuple[ClassCollector, Counter[str], TagSample | None]:
        """One pass over the corpus collecting every class's rows, after the tag sample (its
        sentences are scanned too); also the texts that the preprocessing dropped, by reason."""
        pre: Counter[str] = Counter()
        sentences = self._sentences(None, pre)
        sample, sentences = sample_tags(sentences, filters, self.nlp, self.tag_sample_size)
        check_sample(sample, _pipeline_name(self.nlp))
        collector = ClassCollector(
            filters, self.nlp, max_size_per_class, self.batch_size, self.progress
        )
        collector.run(sentences, total=self._known_total(None))
        return collector, pre, sample

    def _split_complete(
        self,
        frames: dict[str, pd.DataFrame],
        ratios: tuple[float, float, float],
        min_rows: int,
        raise_: bool,
        split_group_col: str | None,
        out_dir: Path | None,
    ) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
        """The classes with rows enough for the splits, split; and the others' row counts
        (reported, or raised with ``raise_``)."""
        needed = max(min_rows, sum(r > 0 for r in ratios))
        incomplete = {cid: len(df) for cid, df in frames.items() if len(df) < needed}
        self._report_incomplete(incomplete, needed, raise_, len(frames), out_dir)
        complete = {cid: df for cid, df in frames.items() if cid not in incomplete}
        return add_splits(complete, ratios, self.seed, split_group_col), incomplete

    def _shape(
        self, frames: dict[str, pd.DataFrame], format: str
    ) -> dict[str, pd.DataFrame] | pd.DataFrame:
        if format == "per_class":
            return frames
        if format == "unified":
            return to_unified(frames, self.seed)
        return to_minimal(frames)

    def _report_incomplete(
        self,
        incomplete: dict[str, int],
        needed: int,
        raise_: bool,
        n_classes: int,
        out_dir: Path | None,
    ) -> None:
        if not incomplete:
            return
        listing = ", ".join(f"{cid!r} ({n} rows)" for cid, n in incomplete.items())
        problem = (
            f"classes with fewer than {needed} rows, too few for train/validation/test "
            f"splits: {listing}"
        )
        fix = (
            "add base data, lower min_left_context_words, loosen the filters or lower "
            "min_rows_per_class_for_split (with validation_ratio=test_ratio=0 one row is enough)"
        )
        left = n_classes - len(incomplete)
        if raise_ or left == 0 or (n_classes >= 2 and left < 2):
            only = "; only one class would be left" if left == 1 else ""
            raise DataInputError(
                "feature_targets",
                f"{problem}{only}. {untouched(out_dir, self.training_basename).rstrip('.')}",
                fix,
            )
        logger.warning("Dropping %s. Fix: %s.", problem, fix)

    def _log_training(self, stats: dict[str, Any]) -> None:
        for cid, cls in stats["classes"].items():
            dropped = cls["excluded"].get("left_context", 0)
            if dropped > cls["matches"]:  # most candidate rows lost to too little left context
                logger.warning(
                    "class %r: %d sentences dropped because the word has fewer than "
                    "min_left_context_words words before it, %d kept; for a corpus of short "
                    "sentences lower min_left_context_words (the default is 10)",
                    cid,
                    dropped,
                    cls["matches"],
                )
        logger.info(
            "Scanned %d sentences (%d parsed by spaCy) in %.1fs%s",
            stats["sentences_scanned"],
            stats["sentences_parsed_by_spacy"],
            stats["scan_seconds"],
            ", stopped early: every class full" if stats["stopped_early"] else "",
        )
        for cid, info in stats["classes"].items():
            logger.info("class %r: %d matches, excluded %s", cid, info["matches"], info["excluded"])

    # ------------------------------------------------------------------ neutral data
    def generate_neutral_data(
        self,
        additional_excluded_words: Iterable[str] | None = None,
        excluded_spacy_tags: SpacyTagSpec | Sequence[SpacyTagSpec] | None = None,
        max_size: int | None = None,
        base_data: Any = None,
        format: str = "minimal",
        output: str | Path | bool | None = None,
    ) -> pd.DataFrame:
        """Sentences with no target word of any filter, no additional excluded word (whole word,
        case-insensitive) and no token matching any of ``excluded_spacy_tags``; column ``text``.
        ``format`` is accepted for compatibility; ``"minimal"`` (the text column) is the only one.
        """
        if format != "minimal":
            raise ValueError(
                f"neutral data has only format='minimal' (a text column), got {format!r}"
            )
        section = "generate_neutral_data"
        check_size("max_size", max_size, section)
        extra = check_word_list("additional_excluded_words", additional_excluded_words, section)
        specs = self._tag_specs(excluded_spacy_tags)
        words = [w for f in self.feature_targets for w in f.words] + extra
        out_dir = self._output_dir(output)
        params = {"max_size": max_size, "excluded_words": sorted(set(words)), "tags": specs}
        key = self._cache_key("neutral", params, base_data)
        cached = self._load_cached(out_dir, self.neutral_basename, key)
        if cached is not None:
            return cached["neutral"]
        pre: Counter[str] = Counter()
        kept, stats = collect_neutral(
            self._sentences(base_data, pre),
            words,
            specs,
            self.nlp,
            max_size,
            self.batch_size,
            self.progress,
        )
        stats.update(texts_excluded_by_preprocess=dict(pre), params=params, cache_key=key)
        self.stats = stats
        logger.info(
            "Neutral data: kept %d of %d sentences, excluded %s",
            stats["rows"],
            stats["sentences_scanned"],
            stats["excluded"],
        )
        df = pd.DataFrame({"text": kept})
        if out_dir is not None:
            self._write_neutral(out_dir, df, stats)
        return df

    def _tag_specs(
        self, excluded_spacy_tags: SpacyTagSpec | Sequence[SpacyTagSpec] | None
    ) -> list[SpacyTagSpec]:
        """``excluded_spacy_tags`` as a list; tags need the creator's spaCy pipeline."""
        specs = (
            [excluded_spacy_tags]
            if isinstance(excluded_spacy_tags, dict)
            else list(excluded_spacy_tags or [])
        )
        if specs and self.nlp is None:
            raise DataInputError(
                "excluded_spacy_tags",
                "excluded_spacy_tags needs a spacy_model",
                "pass spacy_model='en_core_web_sm' (or a loaded spacy.Language) to the creator",
                "generate_neutral_data",
            )
        check_excluded_tags(self.nlp, specs)
        return specs

    def _write_neutral(self, out_dir: Path, df: pd.DataFrame, stats: dict[str, Any]) -> None:
        path = frame_path(out_dir, self.neutral_basename, self.output_format)
        write_frame(df, path, self.output_format)
        stats["files"] = {"neutral": str(path)}
        write_json(stats, out_dir / f"{self.neutral_basename}_stats.json")

    # ------------------------------------------------------------------ output & cache
    def _output_dir(self, output: str | Path | bool | None) -> Path | None:
        if output is False:
            return None
        if output is None:
            return self.output_dir
        if output is True:
            if self.output_dir is None:
                raise ValueError("output=True needs output_dir set on the creator")
            return self.output_dir
        return Path(output)

    def _load_cached(
        self, out_dir: Path | None, basename: str, key: str | None
    ) -> dict[str, pd.DataFrame] | None:
        """The frames an earlier run with the same cache key wrote (``self.stats`` set to
        theirs), or None: no cache key, no output folder or nothing matching there."""
        if key is None or out_dir is None:
            return None
        cached = load_cached(out_dir, basename, key, self.output_format)
        if cached is None:
            return None
        frames, self.stats = cached
        return frames

    def _class_path(self, out_dir: Path, cid: str) -> Path:
        name = f"{self.training_basename}_{safe_name(cid)}"
        return frame_path(out_dir, name, self.output_format)

    def _write_training(
        self,
        out_dir: Path,
        result: dict[str, pd.DataFrame] | pd.DataFrame,
        format: str,
        frames: dict[str, pd.DataFrame],
        incomplete: dict[str, int],
        stats: dict[str, Any],
    ) -> None:
        fmt = self.output_format
        files: dict[str, str] = {}
        if isinstance(result, dict):
            for cid, df in result.items():
                files[cid] = str(write_frame(df, self._class_path(out_dir, cid), fmt))
        else:
            files[format] = str(
                write_frame(result, frame_path(out_dir, self.training_basename, fmt), fmt)
            )
        if incomplete:
            side = pd.concat([frames[c].assign(class_id=c) for c in incomplete], ignore_index=True)
            name = f"{self.training_basename}_incomplete_classes"
            write_frame(side, frame_path(out_dir, name, "parquet" if fmt == "parquet" else "csv"),
                        "parquet" if fmt == "parquet" else "csv")  # fmt: skip
        stats["files"] = files
        write_json(stats, out_dir / f"{self.training_basename}_stats.json")
        logger.info("Wrote training data to %s", out_dir)

    def _cache_key(self, kind: str, params: dict[str, Any], base_data: Any = None) -> str | None:
        """Fingerprint of everything that determines the output; only computed with use_cache."""
        if not self.use_cache:
            return None
        data = base_data if base_data is not None else self.base_data
        return fingerprint((
            kind, describe_data(data), self.text_column, self.base_max_size, self.split,
            self.hf_config, repr(self.preprocess), self.spacy_model_name,
            [repr(f) for f in self.feature_targets], self.min_left_context_words, self.seed,
            self.output_format, params,
        ))  # fmt: skip


def _training_stats(
    stats: dict[str, Any],
    pre: Counter[str],
    incomplete: dict[str, int],
    complete: dict[str, pd.DataFrame],
    params: dict[str, Any],
    key: str | None,
) -> dict[str, Any]:
    """The scan's statistics plus the preprocessing drops, the dropped classes, the rows per
    class and split of the kept ones, the parameters and the cache key."""
    stats.update(
        texts_excluded_by_preprocess=dict(pre),
        incomplete_classes=incomplete,
        rows_per_class={
            cid: {"total": len(df), **{s: int(n) for s, n in df["split"].value_counts().items()}}
            for cid, df in complete.items()
        },
        params=params,
        cache_key=key,
    )
    return stats


def _pipeline_name(nlp: Any) -> str:
    """``en_core_web_sm``-style name of a loaded pipeline, for messages."""
    meta = getattr(nlp, "meta", None) or {}
    name = f"{meta.get('lang', '')}_{meta.get('name', '')}".strip("_")
    return name or "the spaCy pipeline"
