"""The CNN's training curves: loss and validation accuracy per epoch, one line per split."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from datspect.errors import InputError
from datspect.figures.style import DPI, SETTING_COLORS, new_figure, save, styled
from datspect.io.tsv import require_columns
from datspect.vocabulary import SETTINGS, ordered


@styled
def training_curves(
    histories: Mapping[tuple[str, int], pd.DataFrame], out, *, dpi: int = DPI
) -> Figure:
    """Loss (top: validation solid, training dashed) and validation accuracy (bottom) per epoch.

    One panel column per setting.  The training loss is the mean over the epoch's augmented
    batches with dropout on, so it can lie above the validation loss.

    Parameters
    ----------
    histories : mapping
        ``{(setting, split): history}``, each history with ``epoch, val_loss, val_accuracy``
        and optionally ``train_loss`` (the CNN's ``history.tsv``).
    out : str or Path
        The PNG to write.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    matplotlib.figure.Figure
        One line per split in each panel.
    """
    if not histories:
        raise InputError("histories: no training histories given; train the CNN models first")
    for (setting, split), history in histories.items():
        require_columns(
            history, ["epoch", "val_loss", "val_accuracy"], f"history {setting}/{split}"
        )
    settings = ordered([s for s, _ in histories], SETTINGS)
    fig = new_figure(max(5.0, 3.3 * len(settings)), 5.6)
    axes = fig.subplots(2, len(settings), sharex=True, sharey="row", squeeze=False)
    for j, setting in enumerate(settings):
        runs = sorted((split, h) for (s, split), h in histories.items() if s == setting)
        color = SETTING_COLORS.get(setting, "#56B4E9")
        for split, history in runs:
            for ax, col in zip(axes[:, j], ("val_loss", "val_accuracy"), strict=True):
                ax.plot(history["epoch"], history[col], color=color, alpha=0.7, gid=str(split))
            if "train_loss" in history:
                axes[0, j].plot(
                    history["epoch"],
                    history["train_loss"],
                    color=color,
                    alpha=0.5,
                    linestyle="--",
                    linewidth=1.0,
                    gid=f"train:{split}",
                )
        axes[0, j].set_title(f"trained on {setting} ({len(runs)} splits)")
        axes[1, j].set_xlabel("Epoch")
        axes[1, j].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_ylabel("Loss (weighted cross-entropy)\nsolid: validation, dashed: training")
    axes[1, 0].set_ylabel("Validation accuracy\n(fraction correct)")
    fig.suptitle("CNN training: one line per split")
    save(fig, out, dpi)
    return fig
