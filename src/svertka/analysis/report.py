"""Human-readable tables: the zoo overview, a Keras-style per-layer summary,
and the MobileNet paper's Table 8 comparison."""
from __future__ import annotations

from ..spec.geometry import fmt_shape
from ..zoo import get_entry
from .core import Analysis

MACS_NOTE = ("MACs = multiply-accumulates of conv and linear layers at batch 1, bias excluded "
             "(torchvision's 'GFLOPS' column); FLOPs = 2 x MACs.")


def human(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}{unit}"
    return f"{n:g}{unit}"


def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """Plain text table; ``align`` has one of '<' or '>' per column."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    align = align or "<" + ">" * (len(headers) - 1)
    fmt = "  ".join(f"{{:{a}{w}}}" for a, w in zip(align, widths))
    lines = [fmt.format(*headers), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*r) for r in cells]
    return "\n".join(lines)


def _versus(computed: int, ref, exact: bool) -> str:
    if ref is None:
        return ""
    if exact:
        return "= ref" if computed == ref else f"ref {int(ref):,} (differs)"
    return f"paper {human(ref)}"


def models_table(analyses: list[Analysis]) -> str:
    rows = []
    for a in analyses:
        ref = get_entry(a.name).reference
        rf = a.feature_rf
        rows.append([a.name, fmt_shape(a.input_shape), f"{a.params:,}",
                     _versus(a.params, ref.params, ref.exact), f"{a.macs:,}",
                     _versus(a.macs, ref.macs, ref.exact),
                     f"{rf.label()}/{rf.stride[0]}" + ("+SE" if rf.global_context else ""),
                     "" if ref.top1 is None else f"{ref.top1:.1f}"])
    headers = ["model", "input", "params", "vs reference", "MACs", "vs reference",
               "RF/stride", "top-1 ref"]
    return table(headers, rows, "<>>>>>>>") + "\n\n" + MACS_NOTE + (
        "\nRF/stride: receptive field and effective stride of the last feature map, in input "
        "pixels; +SE: squeeze-and-excitation gates also mix in a global summary.")


def summary_table(a: Analysis, max_depth: int | None = None) -> str:
    rows = []
    for la in a.layers[1:]:
        if (max_depth is None and not la.leaf) or (max_depth is not None and la.depth > max_depth):
            continue
        if max_depth is not None and not la.leaf and la.depth < max_depth:
            continue
        rows.append([la.name, la.type, fmt_shape(la.out_shape), f"{la.params:,}",
                     f"{la.macs:,}", la.rf.label(), f"{la.rf.stride[0]}"])
    body = table(["layer", "type", "output", "params", "MACs", "RF", "stride"], rows,
                 "<<>>>>>")
    total = (f"\nTotal params: {a.params:,}   (buffers: {a.buffers:,})\n"
             f"Total MACs: {a.macs:,} ({human(a.macs)}; FLOPs {human(2 * a.macs)})\n"
             f"Activations: {a.activation_bytes / 2**20:.2f} MiB per image (float32 outputs of "
             f"every layer)\nInput: {fmt_shape(a.input_shape)}  ->  output: "
             f"{fmt_shape(a.output_shape)}")
    return f"{a.name}\n{body}\n{total}"


def compare_table(analyses: list[Analysis]) -> str:
    """The MobileNet paper's Table 8 layout, computed beside the reference."""
    rows = []
    for a in analyses:
        ref = get_entry(a.name).reference
        macs, params = ref.paper_macs or ref.macs, ref.paper_params or ref.params
        rows.append([a.name, "" if ref.top1 is None else f"{ref.top1:.1f}%",
                     f"{a.macs / 1e6:,.0f}", "" if macs is None else f"{macs / 1e6:,.0f}",
                     f"{a.params / 1e6:.2f}", "" if params is None else f"{params / 1e6:.2f}"])
    return table(["Model", "ImageNet top-1 (ref)", "Million Mult-Adds", "(paper)",
                  "Million Parameters", "(paper)"], rows, "<>>>>>") + "\n\n" + MACS_NOTE + (
        "\n(paper): the published figure (MobileNet paper, Table 8, where it lists the model).")
