"""Figure styling shared by every ``plot_*`` function: LaTeX text, a font file, arrow glyphs.

``configure_plot_style(PlotStyleConfig(...))`` sets Matplotlib's ``rcParams`` once per
process (again with ``force=True`` or a different config) and returns a ``PlotStyleStatus``
saying what was applied. Every ``plot_*`` function takes ``style=`` and applies it the same
way, so a script styles all figures with one call or per figure.

Unset fields come from the environment: ``GRADIEND_PLOT_USE_LATEX`` (1/true/yes),
``GRADIEND_PLOT_FONT_PATH``, ``GRADIEND_PLOT_LATEX_PREAMBLE_EXTRA`` and
``GRADIEND_PLOT_TRANSITION_ARROWS``. LaTeX text needs a TeX installation (``latex`` and
``dvipng`` or ``gs`` on ``PATH``); without one ``use_latex=True`` falls back to Matplotlib's own
mathtext with a warning instead of failing at the first ``savefig``.
``check_plot_environment()`` reports what is installed before anything is drawn.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gradiend.visualizer._common import import_pyplot
from gradiend.visualizer._common import new_axes as common_axes

logger = logging.getLogger(__name__)

__all__ = [
    "PlotStyleConfig",
    "PlotStyleStatus",
    "apply_style",
    "check_plot_environment",
    "configure_plot_style",
    "latex_available",
]

ENV_PREFIX = "GRADIEND_PLOT_"
# packages every LaTeX preamble gets: the arrows and symbols of transition labels need them
BASE_PREAMBLE = r"\usepackage{amsmath}\usepackage{amssymb}"
_TRUE = ("1", "true", "yes", "on")


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(ENV_PREFIX + name)
    return None if value is None or value.strip() == "" else value.strip().lower() in _TRUE


@dataclass(frozen=True)
class PlotStyleConfig:
    """How figures look. ``None`` fields are read from ``GRADIEND_PLOT_*`` (module docstring).

    Attributes:
        use_latex: Typeset text with LaTeX (when a TeX installation exists; default False).
        latex_preamble_extra: Extra preamble lines after ``amsmath``/``amssymb``.
        font_path: A ``.ttf``/``.otf`` file whose family becomes the default font.
        transition_arrows: Transition labels with arrow glyphs (``a → b``; default True) or
            ASCII (``a -> b``).
    """

    use_latex: bool | None = None
    latex_preamble_extra: str | None = None
    font_path: str | os.PathLike | None = None
    transition_arrows: bool | None = None

    def resolved(self) -> PlotStyleConfig:
        """The config with every ``None`` filled from the environment, then the defaults."""
        env_arrows = _env_flag("TRANSITION_ARROWS")
        font = self.font_path or os.environ.get(ENV_PREFIX + "FONT_PATH") or None
        return replace(
            self,
            use_latex=bool(
                self.use_latex if self.use_latex is not None else _env_flag("USE_LATEX")
            ),
            latex_preamble_extra=self.latex_preamble_extra
            if self.latex_preamble_extra is not None
            else os.environ.get(ENV_PREFIX + "LATEX_PREAMBLE_EXTRA", ""),
            font_path=font,
            transition_arrows=self.transition_arrows
            if self.transition_arrows is not None
            else (True if env_arrows is None else env_arrows),
        )


@dataclass(frozen=True)
class PlotStyleStatus:
    """What ``configure_plot_style`` applied (``applied=False``: it was already in place)."""

    applied: bool
    use_latex: bool
    latex_available: bool
    font_family: str | None
    preamble: str
    transition_arrows: bool
    messages: tuple[str, ...] = field(default_factory=tuple)


def latex_available() -> bool:
    """A TeX installation Matplotlib can use: ``latex`` plus ``dvipng`` or ghostscript."""
    return shutil.which("latex") is not None and (
        shutil.which("dvipng") is not None or shutil.which("gs") is not None
    )


_applied: dict[str, object] = {}  # the last config applied in this process, and its status


def configure_plot_style(
    config: PlotStyleConfig | None = None, force: bool = False
) -> PlotStyleStatus:
    """Apply ``config`` (default: the environment's) to Matplotlib's ``rcParams``."""
    cfg = (config or PlotStyleConfig()).resolved()
    if not force and _applied.get("config") == cfg:
        return replace(_applied["status"], applied=False)
    import_pyplot()  # the plot extra, with the backend chosen
    import matplotlib  # the optional plot extra, imported only when styling is applied

    messages: list[str] = []
    use_latex = bool(cfg.use_latex)
    if use_latex and not latex_available():
        use_latex = False
        messages.append(
            "use_latex=True but no TeX installation was found (latex with dvipng or gs on "
            "PATH): figures use Matplotlib's mathtext instead; install TeX Live to typeset"
        )
    preamble = "".join(p for p in (BASE_PREAMBLE, cfg.latex_preamble_extra) if p)
    matplotlib.rcParams["text.usetex"] = use_latex
    matplotlib.rcParams["text.latex.preamble"] = preamble if use_latex else ""
    family = _use_font(cfg.font_path, messages) if cfg.font_path else None
    for message in messages:
        logger.warning(message)
    status = PlotStyleStatus(
        True, use_latex, latex_available(), family, preamble, bool(cfg.transition_arrows),
        tuple(messages),
    )  # fmt: skip
    _applied.update(config=cfg, status=status)
    return status


def _use_font(path: str | os.PathLike, messages: list[str]) -> str | None:
    """Register the font file and make its family the default; None (and a message) if the
    file is missing or unreadable."""
    from matplotlib import font_manager, rcParams  # the optional plot extra

    file = Path(path)
    if not file.is_file():
        messages.append(f"font_path {str(file)!r} is not a file: the default font is kept")
        return None
    try:
        font_manager.fontManager.addfont(str(file))
        family = font_manager.FontProperties(fname=str(file)).get_name()
    except (OSError, RuntimeError, ValueError) as err:
        messages.append(f"font_path {str(file)!r} could not be read ({err}): default font kept")
        return None
    rcParams["font.family"] = family
    return family


def apply_style(style: PlotStyleConfig | None) -> PlotStyleStatus | None:
    """What every ``plot_*`` does with its ``style=``: apply it, or leave the current style."""
    return None if style is None else configure_plot_style(style)


def check_plot_environment() -> dict[str, object]:
    """What the figures can use here: the plot extra, the backend, TeX, the styling env vars."""
    report: dict[str, object] = {"matplotlib": None, "backend": None, "problems": []}
    try:
        plt = import_pyplot()
        import matplotlib  # the optional plot extra (its version for the report)

        report.update(matplotlib=matplotlib.__version__, backend=plt.get_backend())
    except ImportError as err:
        report["problems"].append(str(err))
    for tool in ("latex", "dvipng", "gs"):
        report[tool] = shutil.which(tool)
    report["latex_available"] = latex_available()
    report["env"] = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    cfg = PlotStyleConfig().resolved()
    if cfg.use_latex and not report["latex_available"]:
        report["problems"].append(f"{ENV_PREFIX}USE_LATEX is set but no TeX installation found")
    if cfg.font_path and not Path(cfg.font_path).is_file():
        report["problems"].append(f"{ENV_PREFIX}FONT_PATH={cfg.font_path!r} is not a file")
    report["ok"] = not report["problems"]
    return report


def new_axes(plt: Any, ax: Any = None, style: Any = None, n: int = 1, **subplots: Any):
    """``(figure, axes, owned)`` after applying ``style`` (a ``PlotStyleConfig``): the caller's
    ``ax`` (``owned`` False) or a new figure (``_common.new_axes``, which the plot modules use)."""
    if style is not None:
        apply_style(style)
    return common_axes(plt, ax, n, **subplots)
