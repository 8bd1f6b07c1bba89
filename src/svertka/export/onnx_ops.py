"""One function per ONNX operator: an ONNX node -> a spec leaf and its weights.

Each function gets the importer (``ctx``: constants, errors that name the node),
the node (``op``) and the per-example input shape, and returns
``(leaf, {name: array})`` with the weights under torch's names (weight, bias,
running_mean, ...). Anything a function cannot map exactly is refused with
``ctx.fail``, never approximated. The joins (Add, Concat, Mul between two
branches) are the importer's, not here: they become Residual, Concat and Gate.
"""
from __future__ import annotations

import math

import numpy as np

from ..spec import nodes as n
from ..spec.geometry import fmt_shape


def _pair(values, default, what, ctx, op):
    values = tuple(int(v) for v in (values if values is not None else default))
    if len(values) != 2:
        ctx.fail(op, f"has {what} {list(values)}; svertka maps 2-D images only")
    return values


def _padding(ctx, op, shape, kernel, stride, dilation):
    """Symmetric (top = bottom, left = right) padding, from ``pads`` or ``auto_pad``."""
    a = op.attrs
    auto = a.get("auto_pad", "NOTSET") or "NOTSET"
    if auto == "VALID":
        return (0, 0)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in zip(shape[1:], kernel, stride, dilation):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            if total % 2:
                ctx.fail(op, f"pads {auto} unevenly ({total} in all); svertka maps symmetric padding only")
            pads.append(total // 2)
        return tuple(pads)
    if auto != "NOTSET":
        ctx.fail(op, f"has auto_pad {auto!r}, which ONNX does not define")
    p = [int(v) for v in a.get("pads", (0, 0, 0, 0))]
    if len(p) != 4 or p[0] != p[2] or p[1] != p[3]:
        ctx.fail(op, f"pads {p} (top, left, bottom, right) unevenly; svertka maps symmetric padding only")
    return (p[0], p[1])


def conv(ctx, op, shape):
    w = ctx.const(op, 1, "weight")
    if w.ndim != 4:
        ctx.fail(op, f"is a {w.ndim - 2}-D convolution; svertka maps 2-D ones")
    b = ctx.const(op, 2, "bias", optional=True)
    a = op.attrs
    groups = int(a.get("group", 1))
    if len(shape) != 3 or shape[0] != w.shape[1] * groups:
        ctx.fail(op, f"has weights for {w.shape[1] * groups} input channels but its input is "
                     f"{fmt_shape(shape)}")
    kernel = _pair(a.get("kernel_shape"), w.shape[2:], "kernel_shape", ctx, op)
    stride = _pair(a.get("strides"), (1, 1), "strides", ctx, op)
    dilation = _pair(a.get("dilations"), (1, 1), "dilations", ctx, op)
    pad = _padding(ctx, op, shape, kernel, stride, dilation)
    leaf = n.Conv2d(int(w.shape[0]), kernel, stride, pad, dilation, groups, b is not None)
    return leaf, _weights(weight=w, bias=b)


def conv_transpose(ctx, op, shape):
    w = ctx.const(op, 1, "weight")
    if w.ndim != 4:
        ctx.fail(op, f"is a {w.ndim - 2}-D transposed convolution; svertka maps 2-D ones")
    b = ctx.const(op, 2, "bias", optional=True)
    a = op.attrs
    if "output_shape" in a:
        ctx.fail(op, "sets output_shape; svertka maps the pads / output_padding form (re-export without it)")
    if len(shape) != 3 or shape[0] != w.shape[0]:
        ctx.fail(op, f"has weights for {w.shape[0]} input channels "
                     f"but its input is {fmt_shape(shape)}")
    groups = int(a.get("group", 1))
    kernel = _pair(a.get("kernel_shape"), w.shape[2:], "kernel_shape", ctx, op)
    stride = _pair(a.get("strides"), (1, 1), "strides", ctx, op)
    dilation = _pair(a.get("dilations"), (1, 1), "dilations", ctx, op)
    if (a.get("auto_pad", "NOTSET") or "NOTSET") not in ("NOTSET", "VALID"):
        ctx.fail(op, f"has auto_pad {a['auto_pad']}; svertka maps explicit pads only")
    pad = _padding(ctx, op, shape, kernel, stride, dilation)
    out_pad = _pair(a.get("output_padding"), (0, 0), "output_padding", ctx, op)
    leaf = n.ConvTranspose2d(int(w.shape[1]) * groups, kernel, stride, pad, out_pad, groups, b is not None,
                             dilation)
    return leaf, _weights(weight=w, bias=b)


def gemm(ctx, op, shape):
    a = op.attrs
    if int(a.get("transA", 0)):
        ctx.fail(op, "transposes its data input (transA=1); svertka maps x @ W.T + b")
    w = ctx.const(op, 1, "weight")
    if w.ndim != 2:
        ctx.fail(op, f"has a {w.ndim}-D weight; a linear layer's is 2-D")
    w = (w if int(a.get("transB", 0)) else w.T) * np.float32(a.get("alpha", 1.0))
    c = ctx.const(op, 2, "bias", optional=True)
    if c is not None:
        c = _bias(ctx, op, c * np.float32(a.get("beta", 1.0)), w.shape[0])
    return _linear(ctx, op, shape, w, c)


def matmul(ctx, op, shape):
    w = ctx.const(op, 1, "weight")
    if w.ndim != 2:
        ctx.fail(op, f"multiplies by a {w.ndim}-D constant; svertka maps x @ W with a 2-D W")
    return _linear(ctx, op, shape, w.T, None)


def _linear(ctx, op, shape, w, b):
    if len(shape) != 1 or shape[0] != w.shape[1]:
        ctx.fail(op, f"has weights for {w.shape[1]} input features "
                     f"but its input is {fmt_shape(shape)}"
                     f"{'; flatten it first' if len(shape) != 1 else ''}")
    return n.Linear(int(w.shape[0]), b is not None), _weights(weight=np.ascontiguousarray(w), bias=b)


def _bias(ctx, op, c, out):
    if c.size not in (1, out) or (c.ndim > 1 and c.shape[-1] != c.size):
        ctx.fail(op, f"adds a bias of shape {list(c.shape)} to {out} outputs")
    return np.broadcast_to(c.reshape(-1), (out,)).copy()


def batch_norm(ctx, op, shape):
    a = op.attrs
    if int(a.get("training_mode", 0)):
        ctx.fail(op, "normalises with batch statistics (training_mode=1); export the model in eval mode")
    if len(shape) != 3:
        ctx.fail(op, f"normalises a {len(shape) + 1}-D tensor; svertka maps BatchNorm2d on (N, C, H, W)")
    arrays = [ctx.const(op, i, what) for i, what in
              enumerate(("scale", "bias", "running_mean", "running_var"), start=1)]
    if any(x.shape != (shape[0],) for x in arrays):
        ctx.fail(op, f"has statistics of shape {[list(x.shape) for x in arrays]} for {shape[0]} channels")
    # ONNX's momentum weighs the running value, torch's the new one; both stored in float32
    leaf = n.BatchNorm2d(eps=_round(a.get("epsilon", 1e-5)), momentum=_round(1.0 - a.get("momentum", 0.9)))
    scale, bias, mean, var = arrays
    return leaf, _weights(weight=scale, bias=bias, running_mean=mean, running_var=var,
                          num_batches_tracked=np.array(0, np.int64))


def _round(x: float) -> float:
    """A float32 attribute as the decimal it was written from (1e-05, not 9.99999974e-06)."""
    return float(f"{float(x):.6g}")


def clip(ctx, op, shape):
    lo = ctx.const(op, 1, "min", optional=True)
    hi = ctx.const(op, 2, "max", optional=True)
    lo = float(op.attrs.get("min", -np.inf)) if lo is None else float(lo)
    hi = float(op.attrs.get("max", np.inf)) if hi is None else float(hi)
    if lo == 0.0 and hi == 6.0:
        return n.ReLU6(), {}
    if lo == 0.0 and hi == np.inf:
        return n.ReLU(), {}
    ctx.fail(op, f"clips to [{lo}, {hi}]; svertka maps Clip(0, 6) (ReLU6) and Clip(0, inf) (ReLU)")


def hard_sigmoid(ctx, op, shape):
    # not rounded: torch's 1/6 is stored as float32 0.16666667, and the torch builder recognises it
    return n.HardSigmoid(float(op.attrs.get("alpha", 0.2)), float(op.attrs.get("beta", 0.5))), {}


def dropout(ctx, op, shape):
    ratio = ctx.const(op, 1, "ratio", optional=True)
    p = float(op.attrs.get("ratio", 0.5)) if ratio is None else float(ratio)
    return n.Dropout(_round(p)), {}


def _pool_geometry(ctx, op, shape):
    a = op.attrs
    if len(shape) != 3:
        ctx.fail(op, f"pools a {len(shape) + 1}-D tensor; svertka maps 2-D pools on (N, C, H, W)")
    kernel = _pair(a.get("kernel_shape"), None, "kernel_shape", ctx, op)
    stride = _pair(a.get("strides"), (1, 1), "strides", ctx, op)
    dilation = _pair(a.get("dilations"), (1, 1), "dilations", ctx, op)
    return kernel, stride, dilation, _padding(ctx, op, shape, kernel, stride, dilation)


def max_pool(ctx, op, shape):
    kernel, stride, dilation, pad = _pool_geometry(ctx, op, shape)
    return n.MaxPool2d(kernel, stride, pad, dilation, bool(op.attrs.get("ceil_mode", 0))), {}


def average_pool(ctx, op, shape):
    kernel, stride, dilation, pad = _pool_geometry(ctx, op, shape)
    if dilation != (1, 1):
        ctx.fail(op, f"has dilations {list(dilation)}; svertka's average pool has none")
    return n.AvgPool2d(kernel, stride, pad, bool(op.attrs.get("ceil_mode", 0)),
                       bool(op.attrs.get("count_include_pad", 0))), {}


def global_average_pool(ctx, op, shape):
    if len(shape) != 3:
        ctx.fail(op, f"pools a {len(shape) + 1}-D tensor; svertka maps (N, C, H, W)")
    return n.AdaptiveAvgPool2d(1), {}


def flatten(ctx, op, shape):
    if int(op.attrs.get("axis", 1)) not in (1, -len(shape)):
        ctx.fail(op, f"flattens from axis {op.attrs.get('axis')}; "
                     "svertka maps Flatten(axis=1) (keep the batch)")
    return n.Flatten(), {}


def reshape(ctx, op, shape):
    target = ctx.static(op, 1, "shape")
    size = math.prod(shape)
    dims = list(target.reshape(-1)) if target is not None else None
    def batch_ok(d):  # 0 copies the batch; "batch" is the input's own batch size
        return (isinstance(d, str) and d == ctx.BATCH) or (_is_int(d) and int(d) in (0, ctx.static_batch))

    if dims is None or len(dims) != 2 or not (
            (batch_ok(dims[0]) and _is_int(dims[1]) and int(dims[1]) in (-1, size))
            or (_is_int(dims[0]) and int(dims[0]) == -1 and _is_int(dims[1]) and int(dims[1]) == size)):
        shown = "computed" if dims is None else [d if _is_int(d) else "batch" for d in dims]
        ctx.fail(op, f"reshapes {fmt_shape(shape)} to {shown}; svertka maps a Reshape only where it "
                     f"flattens each example (batch, -1)")
    return n.Flatten(), {}


def _is_int(d) -> bool:
    return isinstance(d, (int, np.integer))


def lrn(ctx, op, shape):
    a = op.attrs
    size = int(a["size"])
    if size % 2 == 0:
        ctx.fail(op, f"has an even size {size}: ONNX and torch centre such a window differently")
    return n.LocalResponseNorm(size, _round(a.get("alpha", 1e-4)), _round(a.get("beta", 0.75)),
                               _round(a.get("bias", 1.0))), {}


def depth_to_space(ctx, op, shape):
    """CRD order is torch's PixelShuffle (how torch exports it); DCR orders channels otherwise."""
    r = int(op.attrs.get("blocksize", 1))
    mode = op.attrs.get("mode", "DCR") or "DCR"
    if mode != "CRD" and r > 1:
        ctx.fail(op, f"has mode {mode}; svertka maps DepthToSpace in CRD order (torch's PixelShuffle) only")
    if len(shape) != 3 or shape[0] % (r * r):
        ctx.fail(op, f"needs channels divisible by {r * r}, its input is {fmt_shape(shape)}")
    return n.PixelShuffle(r), {}


# torch's nn.Upsample as its exporter writes it (opset 11+): Resize with these attributes
_RESIZE_COORDS = {"nearest": {"asymmetric": None},
                  "linear": {"half_pixel": None, "pytorch_half_pixel": None, "align_corners": True}}


def resize(ctx, op, shape):
    """ONNX ``Resize`` (opset 10-19) and the older ``Upsample`` (7-9) -> ``Upsample``.

    What maps is what torch's ``nn.Upsample`` computes: nearest with asymmetric
    coordinates and floor (x = o / scale), linear with half_pixel ((o + 0.5) / scale
    - 0.5, torch's align_corners=False, kept as its default None) or align_corners.
    pytorch_half_pixel is half_pixel except that an output side of 1 reads input 0,
    where torch (and half_pixel) read the middle: it maps wherever no output side
    is 1 but its input side is. Integer scales become ``scale_factor``, sizes
    ``size``; a whole-size non-integer scale becomes ``size`` on a fixed input.
    """
    a = op.attrs
    if len(shape) != 3:
        ctx.fail(op, f"resizes a {len(shape) + 1}-D tensor; svertka maps (N, C, H, W) images")
    mode = a.get("mode", "nearest") or "nearest"
    old = op.op_type == "Upsample" or ctx.opset < 11   # Upsample 7-9 and Resize 10: x = o / scale, floor
    if old:
        if mode != "nearest":
            ctx.fail(op, f"has mode {mode} with {op.op_type}-{ctx.opset}'s coordinates o / scale, which is "
                         f"neither of torch's bilinear modes; svertka maps this op's nearest mode only "
                         f"(export at opset 11 or later)")
        coords, scales, sizes = "asymmetric", _resize_input(ctx, op, "scales", 1), None
        if "scales" in a:  # Upsample-7 keeps them as an attribute
            scales = np.asarray(a["scales"], np.float32)
    else:
        coords = a.get("coordinate_transformation_mode", "half_pixel") or "half_pixel"
        nearest = a.get("nearest_mode", "round_prefer_floor") or "round_prefer_floor"
        if int(a.get("antialias", 0)):
            ctx.fail(op, "sets antialias=1; svertka maps Resize as torch's nn.Upsample, without antialiasing")
        if coords not in _RESIZE_COORDS.get(mode, {}) or (mode == "nearest" and nearest != "floor"):
            how = f"nearest_mode {nearest}, " if mode == "nearest" else ""
            ctx.fail(op, f"has mode {mode}, {how}coordinate_transformation_mode {coords}; svertka maps "
                         f"torch's nn.Upsample: nearest (asymmetric, floor) and linear (half_pixel, "
                         f"pytorch_half_pixel, align_corners)")
        scales, sizes = _resize_input(ctx, op, "scales", 2), _resize_input(ctx, op, "sizes", 3)
        if sizes is not None and (a.get("keep_aspect_ratio_policy", "stretch") or "stretch") != "stretch":
            ctx.fail(op, f"has keep_aspect_ratio_policy {a['keep_aspect_ratio_policy']}; "
                         f"svertka maps sizes as given (stretch)")
    if (scales is None) == (sizes is None):
        ctx.fail(op, f"has {'both' if scales is not None else 'neither of'} scales and sizes; "
                     "ONNX needs exactly one")
    axes = [int(v) % 4 for v in a.get("axes", range(4))]
    given = scales if scales is not None else sizes
    if len(given) != len(axes):
        ctx.fail(op, f"gives {len(given)} {'scales' if sizes is None else 'sizes'} for {len(axes)} axes")
    if sizes is not None:
        size = _resize_sizes(ctx, op, shape, dict(zip(axes, sizes)))
        leaf = dict(size=size)
    else:
        full = [1.0, 1.0, 1.0, 1.0]
        for ax, s in zip(axes, scales):
            full[ax] = float(s)
        leaf = _resize_scales(ctx, op, shape, full, old)
    out = leaf["size"] if "size" in leaf else (shape[1] * leaf["scale_factor"][0],
                                              shape[2] * leaf["scale_factor"][1])
    if coords == "pytorch_half_pixel" and any(o == 1 < i for o, i in zip(out, shape[1:])):
        ctx.fail(op, f"resizes {fmt_shape(shape)} to a side of 1 with pytorch_half_pixel, which reads the "
                     f"first pixel where torch reads the middle; svertka maps half_pixel there")
    if mode == "nearest":
        return n.Upsample(**leaf), {}
    return n.Upsample(**leaf, mode="bilinear", align_corners=_RESIZE_COORDS[mode][coords]), {}


def _resize_input(ctx, op, what, index):
    """A Resize's scales or sizes as a 1-D array, None where absent or empty."""
    name = op.inputs[index] if index < len(op.inputs) else ""
    if not name:
        return None
    value = ctx.static(op, index, what)
    if value is None:
        ctx.fail(op, f"computes its {what} from the image; svertka maps constant scales or sizes")
    if ctx.depends_on_size(op, index):  # a constant at this input size only
        ctx.fail(op, f"computes its {what} from the image size, which the file leaves open; svertka maps "
                     f"constant scales or sizes (export with a fixed H and W)")
    value = np.asarray(value).reshape(-1)
    return value if value.size else None


def _resize_sizes(ctx, op, shape, sizes):
    """Output sizes by axis -> (H, W); batch and channels must stay as they are."""
    batch = sizes.get(0, ctx.BATCH)
    if not (batch == ctx.BATCH if isinstance(batch, str) else
            (_is_int(batch) and ctx.static_batch is not None and int(batch) == ctx.static_batch)):
        ctx.fail(op, f"resizes the batch to {batch}; svertka's Upsample keeps the batch")
    channels = sizes.get(1, shape[0])
    if not _is_int(channels) or int(channels) != shape[0]:
        ctx.fail(op, f"resizes {shape[0]} channels to {channels}; svertka's Upsample resizes H and W only")
    hw = tuple(sizes.get(ax, shape[ax - 1]) for ax in (2, 3))
    if not all(_is_int(v) and int(v) > 0 for v in hw):
        ctx.fail(op, f"resizes H, W to {list(hw)}; svertka maps positive sizes")
    return tuple(int(v) for v in hw)


def _resize_scales(ctx, op, shape, scales, old):
    """Scales by axis (N, C, H, W) -> scale_factor (integers) or size (whole results on a fixed input)."""
    if scales[0] != 1 or scales[1] != 1:
        ctx.fail(op, f"scales (N, C, H, W) by {[_round(s) for s in scales]}; "
                     f"svertka's Upsample scales H and W only")
    hw = scales[2:]
    if not all(np.isfinite(s) and s > 0 for s in hw):
        ctx.fail(op, f"scales H, W by {hw}; svertka maps positive scales")
    if all(s >= 1 and s == int(s) for s in hw):
        return dict(scale_factor=tuple(int(s) for s in hw))
    shown = f"scales H, W by {[_round(s) for s in hw]}"
    if old:
        ctx.fail(op, f"{shown}; svertka maps this op with integer scales only")
    if ctx.open_size:
        ctx.fail(op, f"{shown} on an image size the file leaves open; svertka's Upsample takes an integer "
                     f"scale, or a fixed size where the input size is fixed")
    # a fixed size computes o * in / out, the file o / scale: the same where scale is out / in
    out = [int(np.floor(np.float32(i) * np.float32(s))) for i, s in zip(shape[1:], hw)]
    if min(out) < 1 or any(np.float32(o / i) != np.float32(s) for o, i, s in zip(out, shape[1:], hw)):
        exact = " x ".join(f"{float(np.float32(i) * np.float32(s)):.6g}" for i, s in zip(shape[1:], hw))
        ctx.fail(op, f"{shown}, which turns the {shape[1]}x{shape[2]} map into {exact} pixels; svertka "
                     f"maps integer scales, or scales that give a whole size on a fixed input")
    return dict(size=tuple(out))


def _simple(leaf_type):
    return lambda ctx, op, shape: (leaf_type(), {})


def _weights(**arrays) -> dict:
    return {k: v for k, v in arrays.items() if v is not None}


# ONNX operator -> mapping; the importer's error lists these names
OPS = {
    "Conv": conv, "ConvTranspose": conv_transpose, "Gemm": gemm, "MatMul": matmul,
    "BatchNormalization": batch_norm, "Relu": _simple(n.ReLU), "Clip": clip, "Sigmoid": _simple(n.Sigmoid),
    "Tanh": _simple(n.Tanh), "HardSigmoid": hard_sigmoid, "MaxPool": max_pool, "AveragePool": average_pool,
    "GlobalAveragePool": global_average_pool, "Flatten": flatten, "Reshape": reshape, "Dropout": dropout,
    "Identity": _simple(n.Identity), "LRN": lrn, "DepthToSpace": depth_to_space, "Resize": resize,
    "Upsample": resize,
}
JOINS = ("Add", "Concat", "Mul")  # between two branches: Residual, Concat, Gate (Mul with a Sigmoid branch)
