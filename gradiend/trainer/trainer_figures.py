"""The trainer's figures, its multi-seed view and its trackers' end (functions of
the trainer that ``TextPredictionTrainer`` delegates to, so the facade stays short)."""

from __future__ import annotations

import logging

from gradiend import visualizer
from gradiend.run_layout import FIG_CONVERGENCE, FIG_IMPORTANCE
from gradiend.trainer import watch
from gradiend.trainer.multi_seed import MultiSeedTrainerView
from gradiend.visualizer.importance import plot_importance_by_layer as draw_importance_by_layer

logger = logging.getLogger(__name__)


def plot_importance_after_training(trainer) -> None:
    """The localisation figure of a fresh run (skipped, with a note, without matplotlib)."""
    try:
        path = plot_importance_by_layer(trainer, show=False)["path"]
    except ImportError as err:
        logger.info("importance figure not drawn: %s", err)
        return
    logger.info("importance by layer and module: %s", path)


def multi_seed(
    trainer,
    selection: str = "all_convergent",
    aggregate: str = "mean",
    dispersion: str | None = "std",
    return_per_seed: bool = False,
) -> MultiSeedTrainerView:
    """A view of the run's saved seeds whose evaluations and figures aggregate them
    (``selection``: best, all_convergent or all_tried; ``aggregate``: mean, median, min or
    max; ``dispersion``: std, range, minmax or none); see ``trainer.multi_seed``."""
    return MultiSeedTrainerView(trainer, selection, aggregate, dispersion, return_per_seed)


def _output(trainer, output, name: str, kwargs: dict):
    """Where a figure of the run is saved: ``output``, else the run folder's file — unless it is
    drawn into the caller's ``ax=``, which is saved only where ``output`` says."""
    kwargs.setdefault("img_format", trainer.img_format)
    if output is not None or kwargs.get("ax") is not None:
        return output
    return trainer.layout.figure(name, trainer.img_format)


def plot_importance_by_layer(trainer, output=None, **kwargs) -> dict:
    """Importance share per layer × module type of the trained GRADIEND
    (``gradiend.visualizer.importance``); saved as ``run_dir/importance_by_layer.<fmt>``
    (``ax=``: drawn into that Matplotlib Axes, saved only to ``output``)."""
    output = _output(trainer, output, FIG_IMPORTANCE, kwargs)
    result = draw_importance_by_layer(
        {trainer.run_id or "run": trainer.get_model().gradiend}, output_path=output, **kwargs
    )
    watch.log_call(trainer, plot_importance_by_layer, (), {}, result)
    return result


def plot_training_convergence(trainer, output=None, **kwargs) -> dict:
    """Loss, class means and correlation over the steps (``gradiend.visualizer.convergence``);
    saved as ``run_dir/training_convergence.<fmt>`` (``ax=``: three Axes, saved only to
    ``output``)."""
    output = _output(trainer, output, FIG_CONVERGENCE, kwargs)
    kwargs.setdefault("target_classes", list(trainer.target_classes))
    result = visualizer.plot_training_convergence(
        trainer.get_training_stats(), output=output, **kwargs
    )
    watch.log_call(trainer, plot_training_convergence, (), {}, result)
    return result


def finish_tracking(trainer) -> None:
    """Finish the runs of ``report_to``'s trackers (also done at interpreter exit); a
    later ``train()`` starts new ones."""
    if trainer._tracking is not None:
        trainer._tracking.close()
        trainer._tracking = None
