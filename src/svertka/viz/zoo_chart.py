"""Accuracy against cost for the zoo's ImageNet models (the chart of Canziani
et al. 2016): top-1 against MACs, bubble area proportional to parameters. Every
number comes from the model's reference metadata (``get_entry(name).reference``);
where a reference gives no MACs, the analysis computes them from the spec."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from .figure import FORMATS, pyplot, save


@dataclass
class ZooPoint:
    name: str
    family: str
    top1: float
    macs: float
    params: float
    source: str


@dataclass
class ZooChart:
    points: list[ZooPoint]
    paths: list[Path] = field(default_factory=list)


def zoo_points(pattern: str = "*", dataset: str = "ImageNet-1k") -> list[ZooPoint]:
    """The models with a published top-1 on ``dataset``."""
    from ..analysis import analyze
    from ..zoo import create_model, get_entry, list_models

    points = []
    for name in list_models(pattern):
        entry = get_entry(name)
        ref = entry.reference
        if ref.dataset != dataset or ref.top1 is None:
            continue
        macs, params = ref.macs, ref.params
        if macs is None or params is None:
            a = analyze(create_model(name))
            macs, params = macs or a.macs, params or a.params
        points.append(ZooPoint(name, entry.family, float(ref.top1), float(macs), float(params), ref.source))
    if not points:
        raise UsageError(f"no zoo model matching {pattern!r} has a published top-1 on {dataset}; "
                         f"try `svertka plot zoo` without a pattern")
    return points


def plot_zoo(pattern: str = "*", out="zoo", formats=FORMATS) -> ZooChart:
    pts = zoo_points(pattern)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 6.5))
    families = sorted({p.family for p in pts})
    colours = plt.get_cmap("tab10")
    biggest = max(p.params for p in pts)
    for k, fam in enumerate(families):
        mine = [p for p in pts if p.family == fam]
        ax.scatter([p.macs / 1e9 for p in mine], [p.top1 for p in mine],
                   s=[30 + 1500 * p.params / biggest for p in mine], alpha=0.55, color=colours(k % 10),
                   edgecolors="black", linewidths=0.5, label=fam)
    for p in pts:
        ax.annotate(p.name, (p.macs / 1e9, p.top1), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set(xlabel="GMACs per image, log scale "
                  "(multiply-accumulates of conv + linear layers; FLOPs = 2 x MACs)",
           ylabel="ImageNet-1k top-1 accuracy (%)",
           title="accuracy against cost: zoo models with a published top-1 (bubble area = parameters)")
    ax.grid(alpha=0.3, which="both")
    from matplotlib.lines import Line2D

    fams = [Line2D([], [], ls="", marker="o", ms=7, color=colours(k % 10), alpha=0.7, label=f)
            for k, f in enumerate(families)]
    sizes = [ax.scatter([], [], s=30 + 1500 * m / biggest, color="grey", alpha=0.4,
                        label=f"{m / 1e6:.0f}M params")
             for m in (5e6, 25e6, 100e6)]  # a size key for the bubbles
    ax.add_artist(ax.legend(handles=fams, loc="lower right", fontsize=7, title="family", title_fontsize=7))
    ax.legend(handles=sizes, loc="center left", fontsize=7, labelspacing=1.8, borderpad=1.2,
              title="bubble area", title_fontsize=7)
    lo = min(p.top1 for p in pts)
    ax.set_ylim(lo - 3, max(p.top1 for p in pts) + 2)
    ax.set_xlim(min(p.macs for p in pts) / 1e9 / 1.6, max(p.macs for p in pts) / 1e9 * 1.6)
    fig.text(0.01, 0.005, "sources: torchvision's weight metadata and the papers (`svertka models --json`)",
             fontsize=6, color="#555555")
    return ZooChart(pts, save(fig, out, formats))
