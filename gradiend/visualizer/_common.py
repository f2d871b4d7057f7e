"""Shared plumbing for every figure: lazy matplotlib, where to save, whether to show.

matplotlib is an optional extra (``pip install gradiend[plot]``), so it is imported only inside
the plot functions, never when ``gradiend`` is imported. A headless machine never needs a
display: without one (or in a non-interactive script that does not ask to show) the ``Agg``
backend is selected before ``pyplot`` is first imported. Every plot function returns
``{"path": str | None, "data": {...}, "figure": Figure}`` so the numbers behind a picture can be
tested without looking at pixels.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# one colour per class in every figure: the two target classes, then the other classes
TARGET_COLOURS = ("#1f77b4", "#d62728")  # target_classes[0] blue, target_classes[1] red
OTHER_CLASS_COLOURS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
NEUTRAL_COLOUR = "#cfcfcf"
# series that are not classes (feature factors of the decoder grid) avoid the class colours
SERIES_COLOURS = ("#ff7f0e", "#7f7f7f", "#17becf", "#bcbd22", "#8c564b", "#e377c2")

PLOT_EXTRA_HINT = "plotting needs the 'plot' extra: pip install gradiend[plot]"
IMG_FORMATS = ("png", "pdf")
DEFAULT_DPI = 100


def is_interactive() -> bool:
    """True in a Python REPL (``python -i``), IPython or a Jupyter kernel."""
    if sys.flags.interactive or hasattr(sys, "ps1"):
        return True
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    return bool(get_ipython is not None and get_ipython() is not None)


def _headless() -> bool:
    """True on Linux without an X11/Wayland display (servers, CI, containers)."""
    if not sys.platform.startswith("linux"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def resolve_show(show: bool | None) -> bool:
    """``show=None`` means: show only in interactive sessions."""
    return is_interactive() if show is None else bool(show)


def import_pyplot(show: bool | None = None) -> Any:
    """Import ``matplotlib.pyplot``, choosing ``Agg`` when no window can or should open.

    The backend is only chosen before pyplot's first import and only when the user has not
    chosen one (``MPLBACKEND``), so a notebook's inline backend is left alone.
    """
    try:
        import matplotlib  # the optional plot extra: imported when a figure is drawn
    except ImportError as err:
        raise ImportError(PLOT_EXTRA_HINT) from err
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        if _headless() or not (resolve_show(show) or is_interactive()):
            matplotlib.use("Agg")
    try:
        import matplotlib.pyplot as plt  # after the backend is chosen above
    except ImportError as err:
        raise ImportError(PLOT_EXTRA_HINT) from err
    return plt


def import_venn() -> Any:
    """Import ``matplotlib_venn`` (part of the ``plot`` extra) with an error naming the extra."""
    try:
        import matplotlib_venn  # the optional plot extra, needed by the Venn diagram only
    except ImportError as err:
        raise ImportError(PLOT_EXTRA_HINT) from err
    return matplotlib_venn


def check_img_format(img_format: str) -> str:
    fmt = img_format.lower().lstrip(".")
    if fmt not in IMG_FORMATS:
        raise ValueError(f"img_format must be one of {IMG_FORMATS}, got {img_format!r}")
    return fmt


def resolve_output(
    output: str | os.PathLike | None, default_name: str, img_format: str
) -> Path | None:
    """File path for a figure, or None when it should not be saved.

    An existing folder (or a path ending in a separator) gets ``<default_name>.<img_format>``
    inside it; a path ending in ``.png``/``.pdf`` is used as is; any other path gets the
    ``img_format`` suffix appended.
    """
    if output is None:
        return None
    fmt = check_img_format(img_format)
    text = os.fspath(output)
    path = Path(text)
    if path.is_dir() or text.endswith((os.sep, "/")):
        return path / f"{default_name}.{fmt}"
    if path.suffix.lower().lstrip(".") in IMG_FORMATS:
        return path
    return path.with_name(f"{path.name}.{fmt}")


def save_figure(fig: Any, path: Path, dpi: int = DEFAULT_DPI) -> Path:
    """Write ``fig`` atomically (temp file in the same folder, then rename); parents created.

    No ``bbox_inches="tight"``: the file is exactly ``figsize × dpi`` pixels, which keeps sizes
    predictable for reports and tests.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lower().lstrip(".")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".{fmt}")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format=fmt, dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("saved figure %s", path)
    return path


def finish(
    fig: Any,
    data: dict[str, Any],
    output: str | os.PathLike | None,
    default_name: str,
    show: bool | None,
    img_format: str = "png",
    dpi: int = DEFAULT_DPI,
    owned: bool = True,
) -> dict[str, Any]:
    """Save (when ``output`` is given), show or release the figure, and build the result dict.

    A figure that is not shown is closed in pyplot so that many plots do not pile up in memory;
    the returned Figure object stays usable (e.g. ``result["figure"].savefig(...)``). A figure
    the caller owns (``owned=False``: drawn into its ``ax=``) is left open for it.
    """
    path = resolve_output(output, default_name, img_format)
    if path is not None:
        save_figure(fig, path, dpi=dpi)
    plt = import_pyplot(show)
    if not owned:
        pass  # the caller composes the figure: it shows or closes it
    elif resolve_show(show) and "agg" not in plt.get_backend().lower():
        plt.show()
    else:
        plt.close(fig)
    return {"path": None if path is None else str(path), "data": data, "figure": fig}


def new_axes(plt: Any, ax: Any = None, n: int = 1, **subplots: Any) -> tuple[Any, Any, bool]:
    """``(figure, axes, owned)`` of a figure of ``n`` panels: the caller's ``ax`` (one Axes, or
    a sequence or array of ``n``; ``owned`` False) or a new ``plt.subplots(**subplots)``
    figure. ``axes`` is one Axes for ``n == 1``, else a flat list of ``n``."""
    if ax is None:
        fig, axes = plt.subplots(**subplots)
        flat = list(getattr(axes, "flat", [axes]))
        return fig, (flat[0] if n == 1 else flat), True
    from matplotlib.axes import Axes  # the optional plot extra, present once pyplot imported

    given = list(ax.flat) if hasattr(ax, "flat") else ax
    given = list(given) if isinstance(given, (list, tuple)) else [given]
    wanted = "one Matplotlib Axes" if n == 1 else f"a sequence of {n} Matplotlib Axes"
    bad = [type(a).__name__ for a in given if not isinstance(a, Axes)]
    if bad:
        raise TypeError(
            f"ax must be {wanted} (this figure has {n} panel(s)), got {type(ax).__name__} "
            f"holding {', '.join(sorted(set(bad)))}: pass e.g. fig.subplots({n}, 1)"
        )
    if len(given) != n:
        raise ValueError(
            f"ax must be {wanted}: this figure has {n} panel(s), {len(given)} Axes given"
        )
    return given[0].figure, (given[0] if n == 1 else given), False


def layout(fig: Any, owned: bool) -> None:
    """``tight_layout`` for a figure of our own; a caller's figure keeps its layout."""
    if owned:
        fig.tight_layout()


def figure_title(fig: Any, axes: Any, text: str, owned: bool) -> None:
    """A figure title: the suptitle of our own figure, the first panel's title in a caller's."""
    if owned:
        fig.suptitle(text)
    else:
        (axes[0] if isinstance(axes, list) else axes).set_title(text)


def display_name(key: Any, mapping: dict | None) -> str:
    """Readable label for a class key, looked up as is and as string (JSON keys are strings)."""
    if mapping:
        for candidate in (key, str(key)):
            if candidate in mapping:
                return str(mapping[candidate])
    return str(key)


def class_colours(
    classes: Sequence[Any], target_classes: Sequence[Any] | None = None
) -> dict[str, str]:
    """The colour of each class, the same in every figure of a run.

    ``target_classes[0]`` is blue and ``target_classes[1]`` red; any other class gets a colour of
    its own by sorted name (so adding a figure never reshuffles them); neutral row types grey.
    Without ``target_classes`` the first two of ``classes`` take the target colours.
    """
    names = [str(c) for c in classes]
    targets = [str(t) for t in (target_classes or names[:2])][: len(TARGET_COLOURS)]
    out = {t: TARGET_COLOURS[i] for i, t in enumerate(targets)}
    others = sorted(n for n in set(names) if n not in out and not n.startswith("neutral"))
    for i, name in enumerate(others):
        out[name] = OTHER_CLASS_COLOURS[i % len(OTHER_CLASS_COLOURS)]
    for name in names:
        out.setdefault(name, NEUTRAL_COLOUR)
    return {n: out[n] for n in dict.fromkeys(names)}


# --- transition labels: `a → b` (directed) and `a ↔ b` (a pair); public in transition_labels
_SEPARATORS = ("→", "->", "↔", "<->")


def transition_directed_arrow(latex: bool = False) -> str:
    """The arrow of a directed transition (source → target)."""
    return r"$\rightarrow$" if latex else "→"


def transition_bidi_arrow(latex: bool = False) -> str:
    """The arrow of an unordered pair (both directions)."""
    return r"$\leftrightarrow$" if latex else "↔"


def _classes(transition: Any, target: Any) -> tuple[str, str]:
    if target is not None:
        return str(transition), str(target)
    if isinstance(transition, str):
        for sep in sorted(_SEPARATORS, key=len, reverse=True):
            if sep in transition:
                a, b = transition.split(sep, 1)
                return a.strip(), b.strip()
        raise ValueError(
            f"{transition!r} is not a transition: write 'a→b' or 'a->b', or pass two classes"
        )
    if isinstance(transition, (tuple, list)) and len(transition) == 2:
        return str(transition[0]), str(transition[1])
    for first, second in (("source", "target"), ("a", "b")):
        if hasattr(transition, first) and hasattr(transition, second):
            return str(getattr(transition, first)), str(getattr(transition, second))
    raise TypeError(
        f"cannot read a transition from {type(transition).__name__}: pass 'a→b', (a, b) or "
        "two classes"
    )


def format_transition_label(
    transition: Any,
    target: Any = None,
    *,
    bidirectional: bool = False,
    latex: bool = False,
    names: dict[str, str] | None = None,
) -> str:
    """``"a → b"`` (``bidirectional``: ``"a ↔ b"``); ``names`` renames classes for display."""
    a, b = _classes(transition, target)
    names = names or {}
    a, b = names.get(a, a), names.get(b, b)
    arrow = transition_bidi_arrow(latex) if bidirectional else transition_directed_arrow(latex)
    return f"{a} {arrow} {b}"
