"""The lecture's "stack more layers" slide, measured.

Plain conv nets of depth L (a stem conv, then L blocks of [BatchNorm] -> ReLU ->
3x3 conv, each optionally wrapped as x + block(x), the pre-activation residual
of He et al. 2016), then global pooling and a linear classifier. At
initialisation, on one real batch of Fashion-MNIST, we measure per block the
standard deviation of its output (activations) and of the loss's gradient with
respect to that output (what backpropagation carries down; the gradient of a
weight is it times the activation below, which hides the trend: in a
ReLU net both scale so that their product stays level).

The weights are drawn here, in NumPy, and loaded into both backends, so the
NumPy engine and torch compute the same numbers; they differ only by rounding,
which depth amplifies (BatchNorm alone at depth 200, where gradients span
10^14: up to 2.5x apart).

Inits (fan_in = 9 x channels): ``default`` is torch's Conv2d init, uniform
+-1/sqrt(fan_in) (variance 1/(3 fan_in): with the ReLU halving it, the signal's
variance shrinks ~6x per layer); ``he`` is N(0, 2/fan_in), which keeps it steady through ReLUs; ``small``
and ``large`` are He's std times 1/2 and 2 (variance per layer x1/4, x4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError

INITS = ("default", "he", "small", "large")
INIT_GAIN = {"he": 1.0, "small": 0.5, "large": 2.0}  # times He's std
DEPTHS = (10, 50, 200, 1000)
CHANNELS = 8
BATCH = 16
SIZE = 14  # Fashion-MNIST images average-pooled 2x2: keeps depth 1000 quick


@dataclass(frozen=True)
class Variant:
    bn: bool
    residual: bool
    init: str

    @property
    def label(self) -> str:
        kind = "+".join(x for x, on in (("BN", self.bn), ("residual", self.residual)) if on) or "plain"
        return f"{kind}, {self.init} init"


@dataclass
class Measured:
    variant: Variant
    depth: int
    backend: str
    act_std: list[float] = field(default_factory=list)    # per block, first to last
    grad_std: list[float] = field(default_factory=list)   # of d loss / d block output

    def row(self) -> dict:
        def num(v):
            return float(v) if math.isfinite(v) else None  # JSON has no inf/nan: overflowed is null

        first, last = self.grad_std[0], self.grad_std[-1]
        ratio = first / last if last and math.isfinite(first) and math.isfinite(last) else math.nan
        return {"bn": self.variant.bn, "residual": self.variant.residual, "init": self.variant.init,
                "depth": self.depth, "backend": self.backend,
                "act_std_first": num(self.act_std[0]), "act_std_last": num(self.act_std[-1]),
                "grad_std_first": num(first), "grad_std_last": num(last),
                "grad_ratio_first_to_last": num(ratio)}


def variants(inits=INITS) -> list[Variant]:
    return [Variant(bn, res, init) for bn in (False, True) for res in (False, True) for init in inits]


def network(depth: int, v: Variant):
    from ..spec import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, Network, ReLU, Sequential, seq
    from ..spec.nodes import Residual

    def body():
        return seq(*([BatchNorm2d()] if v.bn else []), ReLU(), Conv2d(CHANNELS, 3, padding=1))

    blocks = [Residual(body()) if v.residual else body() for _ in range(depth)]
    root = Sequential.named(stem=Conv2d(CHANNELS, 3, padding=1), blocks=seq(*blocks),
                            pool=AdaptiveAvgPool2d(1), flatten=Flatten(), fc=Linear(10))
    return Network(f"depth{depth}", root, (1, SIZE, SIZE), 10, mean=(0.0,), std=(1.0,))


def init_weights(state: dict, v: Variant, seed: int) -> dict:
    """The state_dict with every conv weight drawn for ``v.init``, conv biases zero
    (the weights alone set the scale), the classifier as torch draws it, and
    BatchNorm as it starts (weight 1, bias 0)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, value in state.items():
        value = np.asarray(value)
        if value.ndim == 4:
            fan_in = math.prod(value.shape[1:])
            if v.init == "default":
                w = rng.uniform(-1, 1, value.shape) / math.sqrt(fan_in)
            else:
                w = rng.standard_normal(value.shape) * INIT_GAIN[v.init] * math.sqrt(2 / fan_in)
            out[name] = w.astype(value.dtype)
        elif name == "fc.weight":
            out[name] = (rng.uniform(-1, 1, value.shape) / math.sqrt(value.shape[1])).astype(value.dtype)
        elif name.endswith("bias") and name[: -len("bias")] + "running_mean" not in state:
            out[name] = np.zeros_like(value)
        else:
            out[name] = value
    return out


def real_batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """BATCH Fashion-MNIST test images, 2x2 average-pooled to 14x14, standardised."""
    from ..data import load_dataset

    ds = load_dataset("fashion-mnist-mini", split="test")
    idx = np.random.default_rng(seed).choice(len(ds), BATCH, replace=False)
    x = ds.images[idx, :, :, 0].astype(np.float32) / 255
    x = x.reshape(BATCH, SIZE, 2, SIZE, 2).mean(axis=(2, 4))[:, None]
    return ((x - x.mean()) / x.std()).astype(np.float32), ds.labels[idx].astype(np.int64)


def measure(depth: int, v: Variant, backend: str, batch=None, seed: int = 0) -> Measured:
    """Per-block std of the output and of d loss / d output, at init (train mode:
    BatchNorm normalises with the batch's statistics)."""
    x, y = batch if batch is not None else real_batch(seed)
    net = network(depth, v)
    m = Measured(v, depth, backend)
    with np.errstate(over="ignore", invalid="ignore"):
        if backend == "numpy":
            from ..backends import numpy as engine

            model = engine.compile(net)
            model.load_state_dict(init_weights(model.state_dict(), v, seed))
            m.act_std, m.grad_std = _segmented(model.train(), x, y, engine.Tensor,
                                               lambda a: engine.Tensor(a.data, requires_grad=True),
                                               engine.functional.cross_entropy,
                                               lambda t: np.asarray(getattr(t, "data", t), np.float64))
        elif backend == "torch":
            import torch

            from ..backends.torch import compile as torch_compile

            model = torch_compile(net)
            state = init_weights({k: t.detach().numpy() for k, t in model.state_dict().items()}, v, seed)
            model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in state.items()})
            m.act_std, m.grad_std = _segmented(model.train(), torch.from_numpy(x), torch.from_numpy(y),
                                               lambda a: a, lambda a: a.detach().requires_grad_(),
                                               torch.nn.functional.cross_entropy,
                                               lambda t: t.detach().double().numpy())
        else:
            raise UsageError(f"unknown backend {backend!r}; choose numpy or torch")
    return m


def _segmented(model, x, y, tensor, cut, loss_fn, to_numpy):
    """Run stem, each block and the head as separate graphs, each starting from
    a fresh leaf (``cut``), then backpropagate segment by segment: each leaf's
    .grad is then d loss / d that block's output. The same few lines serve both
    backends; only the tensor verbs are passed in."""
    modules = dict(model.named_modules())
    depth = sum(1 for name in modules if name.count(".") == 1 and name.startswith("blocks."))
    segments = [[modules["stem"]]] + [[modules[f"blocks.{i}"]] for i in range(depth)] + \
               [[modules["pool"], modules["flatten"], modules["fc"]]]
    leaves, outs, a = [], [], tensor(x)
    for seg in segments:
        leaf = cut(a) if leaves or outs else a
        a = leaf
        for mod in seg:
            a = mod(a)
        leaves.append(leaf)
        outs.append(a)
    loss_fn(outs[-1], y).backward()
    for k in range(len(segments) - 2, 0, -1):  # block k's output is leaf k + 1
        outs[k].backward(leaves[k + 1].grad)
    act = [float(to_numpy(outs[k]).std()) for k in range(1, depth + 1)]
    grad = [float(to_numpy(leaves[k + 1].grad).std()) for k in range(1, depth + 1)]
    return act, grad


def run_experiment(depths=DEPTHS, backends=("numpy", "torch"), inits=INITS, seed: int = 0,
                   log=None) -> list[Measured]:
    batch = real_batch(seed)
    results = []
    for depth in depths:
        for v in variants(inits):
            for backend in backends:
                results.append(measure(depth, v, backend, batch, seed))
                if log:
                    r = results[-1].row()
                    log(f"depth {depth:5d} {v.label:28s} {backend:5s} grad std first/last "
                        f"{r['grad_ratio_first_to_last']}")
    return results


def plot_depth(results: list[Measured], out="depth", formats=("png", "svg")):
    """Per-block std at the largest depth: rows activations and gradients, one column per init."""
    from .figure import pyplot, save

    depth = max(r.depth for r in results)
    deepest = [r for r in results if r.depth == depth]
    inits = [i for i in INITS if any(r.variant.init == i for r in deepest)]
    plt = pyplot()
    fig, axes = plt.subplots(2, len(inits), figsize=(3.3 * len(inits) + 0.8, 6.4), squeeze=False, sharex=True)
    colours = {(False, False): "#d62728", (True, False): "#1f77b4", (False, True): "#ff7f0e",
               (True, True): "#2ca02c"}
    names = {(False, False): "plain", (True, False): "BatchNorm", (False, True): "residual",
             (True, True): "BatchNorm + residual"}
    layers = np.arange(1, depth + 1)
    for col, init in enumerate(inits):
        for r in deepest:
            if r.variant.init != init:
                continue
            key = (r.variant.bn, r.variant.residual)
            style = dict(color=colours[key], lw=1.4 if r.backend == "numpy" else 0.9,
                         ls="-" if r.backend == "numpy" else "--",
                         label=f"{names[key]} ({r.backend})")
            for row, values in enumerate((r.act_std, r.grad_std)):
                v = np.asarray(values, np.float64)
                v[~np.isfinite(v) | (v <= 0)] = np.nan  # overflowed or exactly zero: not drawn on a log axis
                axes[row, col].plot(layers, v, **style)
        axes[0, col].set_title(f"{init} init")
        axes[1, col].set_xlabel("block (1 = next to the input)")
        for row in (0, 1):
            axes[row, col].set_yscale("log")
            axes[row, col].grid(alpha=0.3, which="major")
    axes[0, 0].set_ylabel("std of the block's output")
    axes[1, 0].set_ylabel("std of d loss / d block output")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle(f"stacking {depth} conv layers at initialisation (one Fashion-MNIST batch of {BATCH}, "
                 f"{CHANNELS} channels, {SIZE}x{SIZE}); solid NumPy engine, dashed torch\n"
                 f"a line stops where float32 runs out: overflow (inf, nan) or underflow (0)")
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    return save(fig, out, formats)


def fmt_ratio(v) -> str:
    """A gradient ratio for a table: None is a value that overflowed (inf or nan);
    0 is block 1's gradient underflowed to zero in float32."""
    if v is None:
        return "overflow"
    return "underflow" if v == 0 else f"{v:.3g}"


def markdown_table(rows: list[dict]) -> str:
    """Gradient std at block 1 over the last block's, one row per net and init,
    one column per depth, "numpy / torch" in each cell."""
    fmt = fmt_ratio

    depths = sorted({r["depth"] for r in rows})
    cells: dict[tuple, dict] = {}
    for r in rows:
        cells.setdefault((r["bn"], r["residual"], r["init"]), {}).setdefault(r["depth"], {})[r["backend"]] = r
    lines = ["| net | init | " + " | ".join(f"depth {d:,}" for d in depths) + " |",
             "|---|---|" + "---:|" * len(depths)]
    for (bn, res, init), per_depth in cells.items():
        kind = " + ".join(x for x, on in (("BatchNorm", bn), ("residual", res)) if on) or "plain"
        vals = []
        for d in depths:
            per = per_depth.get(d, {})
            vals.append(" / ".join(fmt(per[b]["grad_ratio_first_to_last"])
                                   for b in ("numpy", "torch") if b in per))
        lines.append(f"| {kind} | {init} | " + " | ".join(vals) + " |")
    return "\n".join(lines)
