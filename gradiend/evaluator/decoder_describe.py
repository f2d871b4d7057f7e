"""One-line descriptions of decoder results, for ``gradiend evaluate``'s printout and the
rewrite's log: the selected point with its NLL change on the selection and held-out texts, its
specificity, and what the search did."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def summaries(results: Mapping[str, Any]) -> dict[str, dict]:
    """The per-class summaries of decoder results (``grid``, ``search`` and the saved file's
    index entries aside)."""
    return {k: v for k, v in results.items() if isinstance(v, dict) and "learning_rate" in v}


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):+.2f} %"


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.4f}"


def describe_summary(key: str, s: Mapping[str, Any]) -> str:
    """``decoder she: ff=-1.0 η=0.27 P 0.014 -> 0.96, NLL +0.71 % (held-out +0.63 %), …``."""
    held = s.get("heldout")
    held_txt = f"held-out {_pct(s.get('heldout_nll_increase'))}" if held else "no held-out texts"
    steps = f", {held['step_backs']} step back(s)" if held and held.get("step_backs") else ""
    line = (
        f"decoder {key}: feature_factor={s.get('feature_factor')} learning_rate="
        f"{s.get('learning_rate'):.4g} value {_f(s.get('base_value'))} -> {_f(s.get('value'))}"
        f", neutral NLL {_pct(s.get('nll_increase'))} ({held_txt}{steps}), LMS "
        f"{_f(s.get('lms'))} (base {_f(s.get('base_lms'))}), passed={s.get('passed')}"
    )
    return line + describe_specificity(s.get("specificity"))


def describe_specificity(spec: Mapping[str, Any] | None) -> str:
    """``; P(she) on neutral text ×3.1, 92 % of the other class's sentences flipped, …``."""
    if not spec:
        return ""
    neutral, flip, own = spec.get("neutral", {}), spec.get("flip", {}), spec.get("own", {})
    ratio = neutral.get("ratio")
    parts = [f"P({spec.get('target')}) on neutral text ×{ratio:.2f}" if ratio else ""]
    if flip.get("flipped") is not None:
        parts.append(f"{100 * flip['flipped']:.0f} % of the other class's sentences flipped")
    if own.get("before") is not None:
        parts.append(f"own sentences {_f(own['before'])} -> {_f(own['after'])}")
    for c in spec.get("controls", []):
        a, b = c["pair"]
        parts.append(
            f"control {a}/{b}: share {_f(c['share_before'])} -> {_f(c['share_after'])}, "
            f"{100 * (c['flipped'] or 0):.0f} % flipped"
        )
    return "; " + ", ".join(p for p in parts if p)


def describe_search(info: Mapping[str, Any] | None) -> str:
    """``decoder search: adaptive, 7 points (5 screened), 5.4 full passes, 3.8 s; neutral texts
    26 selection / 14 held-out (margin 20 %)``."""
    if not info:
        return "decoder search: no record"
    split = info.get("split") or {}
    line = (
        f"decoder search: {info.get('mode')}, {info.get('n_points')} points "
        f"({info.get('n_screened')} screened), {info.get('full_pass_equivalents', 0):.1f} full "
        f"passes, {info.get('seconds', 0):.1f} s"
    )
    if split:
        line += (
            f"; neutral texts {split.get('selection_texts')} selection "
            f"({split.get('selection_distinct_tokens')} distinct tokens) / "
            f"{split.get('heldout_texts')} held-out ({split.get('heldout_distinct_tokens')}), "
            f"margin {100 * (split.get('margin') or 0):.0f} %"
        )
        if split.get("fallback"):
            line += f"; no held-out check: {split['fallback']}"
    return line


def describe(results: Mapping[str, Any]) -> list[str]:
    """Every summary's line, then the search's."""
    lines = [describe_summary(k, s) for k, s in summaries(results).items()]
    if "search" in results:
        lines.append(describe_search(results.get("search")))
    return lines
