"""The report's "Methods side by side" section: a saved ``compare_methods`` table
(``method_comparison.json``) in the run folder or in the comparison folder above it."""

from __future__ import annotations

import html
import logging

from gradiend.evaluator.methods_table import SHOWN, MethodComparison
from gradiend.report.collect import RunFiles

logger = logging.getLogger(__name__)

TITLE = "<h2>Methods side by side</h2>"


def section_methods(run: RunFiles, table) -> str:
    """The section, or nothing when no comparison was saved beside the run."""
    if not run.methods:
        return ""
    try:
        cmp = MethodComparison.from_dict(run.methods)
    except (ValueError, KeyError, TypeError) as err:
        logger.warning("report: the saved method comparison of %s is unreadable (%s)",
                       run.run_dir, err)  # fmt: skip
        return TITLE + '<p class="note">the saved method comparison cannot be read</p>'
    rows = [tuple(html.escape(c) for c in cells) for cells in cmp.cells()]
    best = {i for i, r in enumerate(cmp.rows) if r is cmp.best()}
    intro = (
        f"<p>GRADIEND (gradient signal), ACTIEND (activation at the prediction position) and "
        f"CAA (difference of class means) under the same decoder budget: P("
        f"{html.escape(cmp.target_class)}) on the other class's held-out sentences, recomputed "
        "from each method's saved and reloaded model (<code>compare_methods</code>). "
        "Highlighted: the strongest inside the budget, a converged method where one kept it; "
        "a method that did not converge is marked (not converged).</p>"
    )
    return TITLE + intro + table(rows, [h for _, h in SHOWN], selected=best)
