"""The digest's one picture: the quarter's open pipeline by forecast category, week by week, against quota.

A founder reads the digest on a phone between meetings, so the chart must say one thing at chat size
(900×450 px): is the committed and likely pipeline growing toward the quota line or not. It is drawn
server-side with matplotlib's non-interactive Agg backend (no display exists on a bot host) through the
object-oriented `Figure` API rather than pyplot, so no global figure state is shared between concurrent
renders. The output is deterministic — same data, same bytes — because the PNG carries no software or
time metadata; that lets two processes store the same attachment without a conflict mattering.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import matplotlib

matplotlib.use("Agg")  # before any pyplot import anywhere in the process: a bot host has no display

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from cadences.parsing import format_money_short

WIDTH_PX, HEIGHT_PX, DPI = 900, 450, 100
MAX_WEEKS = 12
# Commit is the darkest: the eye should land on what the reps are confident about first.
SERIES = (
    ("commit", "Commit", "#1f4e79"),
    ("best_case", "Best case", "#5b9bd5"),
    ("pipeline", "Pipeline", "#bdd7ee"),
)
QUOTA_COLOUR = "#c00000"


@dataclass(frozen=True)
class ChartPoint:
    """One week's open pipeline in the quarter, by forecast category (ISO week key, e.g. "2026-W48")."""

    week: str
    commit: Decimal
    best_case: Decimal
    pipeline: Decimal

    @property
    def total(self) -> Decimal:
        return self.commit + self.best_case + self.pipeline

    @property
    def monday(self) -> date:
        year, week = self.week.split("-W")
        return date.fromisocalendar(int(year), int(week), 1)


def week_label(point: ChartPoint) -> str:
    """'Nov 23': the Monday of the week, which a founder reads faster than 'W48'."""
    monday = point.monday
    return f"{monday:%b} {monday.day}"


def pipeline_chart(points: Sequence[ChartPoint], quota: Decimal, currency: str, *, quarter: str) -> bytes:
    """A PNG (900×450 px) of stacked commit / best case / pipeline bars for the last `MAX_WEEKS` points,
    with the quota as a line; byte-identical for identical input."""
    shown = list(points)[-MAX_WEEKS:]
    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    positions = list(range(len(shown)))
    bottoms = [0.0] * len(shown)
    for attr, label, colour in SERIES:
        heights = [float(getattr(p, attr)) for p in shown]
        ax.bar(
            positions, heights, bottom=bottoms, width=0.6, label=label, color=colour, edgecolor="white", linewidth=0.5
        )
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    for x, p in zip(positions, shown, strict=True):
        if p.total:
            ax.annotate(
                format_money_short(p.total, currency),
                (x, float(p.total)),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
            )
    ax.axhline(
        float(quota),
        color=QUOTA_COLOUR,
        linewidth=1.5,
        linestyle="--",
        label=f"Quota {format_money_short(quota, currency)}",
    )
    top = max([float(quota), *bottoms])
    ax.set_ylim(0, top * 1.12 if top else 1.0)
    ax.set_xlim(-0.6, max(len(shown), 1) - 0.4)
    ax.set_xticks(positions, [week_label(p) for p in shown])
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: format_money_short(Decimal(str(value)), currency)))
    ax.set_xlabel("Week (starting Monday)")
    ax.set_ylabel(f"Open pipeline this quarter ({currency})")
    ax.set_title(f"Pipeline by forecast category vs quota — {quarter}")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    # Beside the plot, not over it: a tall bar or the quota line would otherwise hide behind the legend.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()
