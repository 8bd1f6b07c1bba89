"""ONNX file -> spec Network + state_dict, so analysis and both backends run it.

How a graph becomes a spec:

1. The file is read without following external-data paths and checked with
   ``onnx.checker``; a truncated or corrupt file is one ``DataError`` line.
2. Values that do not depend on the image (initializers, Constant nodes, and
   the Shape -> Gather -> Concat arithmetic some exporters write for
   ``x.view(x.size(0), -1)``) are constants, evaluated on demand.
3. The rest is a DAG from the one input to the one output. A walk follows it;
   where a value feeds several nodes, the branches run to the node that
   post-dominates the fork, which must join them: Add -> Residual,
   Concat -> Concat, Mul -> Gate (or SiLU, for x * sigmoid(x)). Every other
   node is one leaf (``onnx_ops.py``).
4. Names: torch's exporter calls a node ``/features/features.3/conv/Conv``,
   the scopes of the module that ran it; they spell the state_dict path
   (``features.3.conv``), so an exported svertka or torchvision model comes
   back under its own names. Without such names, children are numbered.

Anything else (an unknown operator, a join of branches that were not opened
together, a second output) is a ``SpecError`` naming the node and operator.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, SpecError, SvertkaError, UsageError
from ..spec import nodes as n
from ..spec.geometry import fmt_shape, join_path
from .onnx_export import META_PREFIX, _require_onnx
from .onnx_ops import JOINS, OPS

BATCH = "batch"          # the batch dimension inside a shape computed from the graph
SIZE = "size"            # an image-size-dependent dimension, while depends_on_size evaluates
STATIC_OPS = {"Constant", "Identity", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice"}


@dataclass
class Imported:
    """What an ONNX file becomes: the spec, its weights by state_dict path, and
    the svertka metadata the file carried (classes, mean, std), if any."""

    network: n.Network
    state_dict: dict
    meta: dict = field(default_factory=dict)


@dataclass(eq=False)
class _Op:
    proto: object
    name: str
    op_type: str
    inputs: list        # every input name ("" for an omitted optional one)
    outputs: list
    attrs: dict
    data_inputs: list = field(default_factory=list)   # the inputs that depend on the image
    path: str | None = None                            # the state_dict path its name spells


@dataclass(eq=False)
class _Item:
    """One converted piece of the graph, named later: a leaf, or a join with its branches."""

    kind: str               # leaf | residual | concat | gate
    path: str | None
    leaf: n.Node | None = None
    weights: dict = field(default_factory=dict)
    parts: list = field(default_factory=list)   # residual: [body, shortcut]; concat: branches; gate: [branch]
    post: "_Item | None" = None


def load_onnx(path, input_size: int | None = None) -> Imported:
    """Read an ONNX file of common CNN operators into a spec and weights.

    ``input_size`` sets H = W where the file leaves them open (dynamic axes)."""
    _require_onnx()
    model = _read(Path(path))
    try:
        return _Importer(model, Path(path), input_size).run()
    except SvertkaError:
        raise
    except Exception as e:  # a file that passed the checker but is inconsistent (tensor sizes, attributes)
        raise DataError(f"{path} cannot be imported: {type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0][:120]}; check the file with onnx.checker "
                        f"(full_check=True)") from None


def _read(path: Path):
    import onnx

    if not path.is_file():
        raise DataError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # DecodeError, ValueError...: all mean "not a whole ONNX file"
        raise DataError(f"{path} is not a readable ONNX file (truncated or corrupt: "
                        f"{(str(e).splitlines() or [type(e).__name__])[0][:80]}); export it again") from None
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise DataError(f"{path} keeps its weights in external files ({external[0]} ...); svertka reads "
                        f"self-contained .onnx files only (onnx.save without save_as_external_data)")
    if not model.graph.node:
        raise DataError(f"{path} holds no graph (an empty or truncated ONNX file); export it again")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise DataError(f"{path} fails onnx.checker ({str(e).splitlines()[0][:120]}); "
                        "export it again") from None
    return model


class _Importer:
    BATCH = BATCH  # the ops read it as ctx.BATCH

    def __init__(self, model, path: Path, input_size):
        import onnx
        from onnx import numpy_helper

        self.onnx, self.path, self.file = onnx, path, path.name
        graph = model.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.meta = {}
        for p in model.metadata_props:
            if p.key.startswith(META_PREFIX):
                try:
                    self.meta[p.key[len(META_PREFIX):]] = json.loads(p.value)
                except json.JSONDecodeError:
                    pass  # someone else's text under our prefix: ignore, it is only a hint
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise SpecError(f"{self.file}: the graph has {len(inputs)} inputs "
                            f"({', '.join(i.name for i in inputs)}); svertka maps one-input image models")
        if len(graph.output) != 1:
            raise SpecError(f"{self.file}: the graph has {len(graph.output)} outputs "
                            f"({', '.join(o.name for o in graph.output)}); svertka maps one-output models")
        self.input, self.output = inputs[0].name, graph.output[0].name
        self.input_shape, self.static_batch = self._input_shape(inputs[0], input_size)
        # the default domain's version: an op's inputs and attributes depend on it (Resize 10 vs 11)
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.ops = [self._op(p) for p in graph.node]
        self.producer = {o: op for op in self.ops for o in op.outputs if o}
        self.shapes = {self.input: self.input_shape}   # per example, filled as the walk goes
        self.static_cache = {}
        self.symbolic_size = False   # while set, Shape leaves H and W open (see depends_on_size)
        self._mark_data()

    # ---------------------------------------------------------------- reading

    def _input_shape(self, value, input_size):
        t = value.type.tensor_type
        if value.type.WhichOneof("value") != "tensor_type" or t.elem_type not in (1, 10, 11):
            raise SpecError(f"{self.file}: input {value.name} is not a float tensor; "
                            "svertka maps image models")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if len(dims) != 4:
            raise SpecError(f"{self.file}: input {value.name} has {len(dims)} dimensions; svertka maps "
                            f"(N, C, H, W) images")
        c, h, w = dims[1:]
        if c is None:
            raise SpecError(f"{self.file}: input {value.name} leaves its channel count open; "
                            "svertka needs it")
        self.open_size = h is None or w is None   # the file runs at any size; the spec at one
        if input_size:  # only where the file leaves the size open
            h, w = h or int(input_size), w or int(input_size)
        if h is None or w is None:
            raise UsageError(f"{self.file} leaves the image size open; give it, e.g. --input {c}x224x224")
        return (c, h, w), dims[0]

    def _op(self, proto):
        attrs = {}
        for a in proto.attribute:
            v = self.onnx.helper.get_attribute_value(a)
            attrs[a.name] = v.decode() if isinstance(v, bytes) else v
        op = _Op(proto, proto.name or f"{proto.op_type}#{len(getattr(self, 'ops', []))}", proto.op_type,
                 list(proto.input), list(proto.output), attrs)
        op.path = _scope_path(proto.name)
        return op

    def _mark_data(self):
        """Which values depend on the image: they form the graph the walk maps."""
        data = {self.input}
        self.consumers: dict[str, list[_Op]] = {}
        for op in self.ops:  # ONNX lists nodes in topological order (the checker enforces it)
            op.data_inputs = [v for v in op.inputs if v in data]
            if op.data_inputs and op.op_type != "Shape":
                data.update(o for o in op.outputs if o)
                for v in dict.fromkeys(op.data_inputs):
                    self.consumers.setdefault(v, []).append(op)
        if self.output not in data:
            raise SpecError(f"{self.file}: the output {self.output} does not depend on the input")

    # ------------------------------------------------------------- constants

    def const(self, op, index, what, optional=False):
        """Input ``index`` of ``op`` as a float32 array; refuses one computed from the image."""
        name = op.inputs[index] if index < len(op.inputs) else ""
        if not name:
            if optional:
                return None
            self.fail(op, f"lacks its {what} input")
        value = self._static_value(name)
        if value is None or value.dtype == object:
            self.fail(op, f"computes its {what} from the image; svertka maps constant weights only")
        return value.astype(np.float32) if value.dtype.kind == "f" else value

    def static(self, op, index, what):
        """Input ``index`` as a constant array that may hold ``BATCH``; None when not computable."""
        name = op.inputs[index] if index < len(op.inputs) else ""
        return self._static_value(name) if name else None

    def depends_on_size(self, op, index) -> bool:
        """Whether input ``index`` (a constant at this import's input size) changes
        with the image size in a file that leaves the size open: it is evaluated again
        with every size from a Shape left as a name."""
        if not self.open_size:
            return False
        cache, self.static_cache, self.symbolic_size = self.static_cache, {}, True
        try:
            value = self.static(op, index, "")
        finally:
            self.static_cache, self.symbolic_size = cache, False
        return value is None or any(isinstance(v, str) and v != BATCH for v in np.asarray(value).ravel())

    def _static_value(self, name):
        if name in self.consts:
            return self.consts[name]
        if name in self.static_cache:
            return self.static_cache[name]
        op = self.producer.get(name)
        value = None
        if op is not None and op.op_type in STATIC_OPS:
            try:
                value = self._evaluate(op)
            except SvertkaError:
                raise
            except Exception:  # an index out of range, a shape the rule did not expect: not computable
                value = None
        self.static_cache[name] = value
        return value

    def _evaluate(self, op):
        a, t = op.attrs, op.op_type
        if t == "Constant":
            if "value" in a:
                return self.onnx.numpy_helper.to_array(a["value"])
            for key in ("value_float", "value_int", "value_floats", "value_ints"):
                if key in a:
                    return np.asarray(a[key])
            return None
        if t == "Shape":
            shape = self.shapes.get(op.inputs[0])
            if shape is None:
                return None
            if self.symbolic_size:  # every size but the channel count follows the image's
                shape = [shape[0] if len(shape) == 3 else SIZE] + [SIZE] * (len(shape) - 1)
            full = np.array([BATCH if self.static_batch is None else self.static_batch, *shape], object)
            return full[a.get("start", 0):a.get("end", len(full))]
        ins = [self._static_value(v) if v else None for v in op.inputs]
        if ins[0] is None:
            return None
        x = ins[0]
        if t in ("Identity", "Cast"):
            return x
        if t == "Gather":
            return np.asarray(np.take(x, np.asarray(ins[1]).astype(np.int64), axis=a.get("axis", 0)), x.dtype)
        if t in ("Unsqueeze", "Squeeze"):
            axes = a.get("axes") if len(ins) < 2 or ins[1] is None else [int(v) for v in ins[1]]
            if t == "Squeeze":
                return np.squeeze(x, tuple(axes)) if axes else np.squeeze(x)
            for ax in sorted(int(v) % (x.ndim + len(axes)) for v in axes):
                x = np.expand_dims(x, ax)
            return x
        if t == "Concat":
            parts = [v for v in ins if v is not None]
            if len(parts) != len(ins):
                return None
            return np.concatenate([np.asarray(p, object) for p in parts], axis=a.get("axis", 0))
        if t == "Slice" and x.ndim == 1 and all(v is not None for v in ins[1:3]):
            step = int(ins[4][0]) if len(ins) > 4 and ins[4] is not None else 1
            return x[int(ins[1][0]):int(ins[2][0]):step]
        return None

    # ------------------------------------------------------------------- walk

    def fail(self, op, message):
        raise SpecError(f"{self.file}: node {op.name} ({op.op_type}) {message}")

    def run(self) -> Imported:
        self._post_dominators()
        items, out_shape, _ = self._chain_after(None, "EXIT", self.input_shape)
        if not items:
            raise SpecError(f"{self.file}: the graph has no layer between its input and output")
        root = n.Sequential(_Namer().children("", items))
        state = {}
        leaf_weights = {id(it.leaf): it.weights for it in _all_leaves(items)}
        for path, node in n.walk(root):
            for k, v in leaf_weights.get(id(node), {}).items():
                state[join_path(path, k)] = np.require(v, requirements="C")  # keeps 0-d arrays 0-d
        meta = self.meta
        name = str(meta.get("model") or self.path.stem)
        num_classes = int(out_shape[0]) if out_shape else 1
        kwargs = {}
        if isinstance(meta.get("mean"), list) and isinstance(meta.get("std"), list):
            kwargs = {"mean": tuple(float(v) for v in meta["mean"]),
                      "std": tuple(float(v) for v in meta["std"])}
        net = n.Network(name, root, self.input_shape, num_classes, meta={"source": str(self.path)}, **kwargs)
        return Imported(net, state, meta)

    def _succ(self, point):
        """The nodes that read ``point``'s output (point None is the graph input); "EXIT" past the output."""
        value = self.input if point is None else self._out(point)
        # a node the output does not depend on cannot change the answer: it is left out
        nodes = [c for c in self.consumers.get(value, []) if c in self.reach]
        return nodes + (["EXIT"] if value == self.output else [])

    def _out(self, op):
        used = [o for o in op.outputs if o and (o == self.output or any(
            c in self.reach for c in self.consumers.get(o, [])))]
        if len(used) > 1:
            self.fail(op, f"feeds the rest of the graph from {len(used)} outputs; "
                          "svertka maps one output per layer")
        if not used:
            self.fail(op, "has no output the graph uses")
        return used[0]

    def _post_dominators(self):
        """Immediate post-dominator of each node of the image DAG (and of the input):
        where all paths from it meet again."""
        self.reach = reach = set()
        stack = [self.producer.get(self.output)]
        while stack:  # nodes the output depends on; others are dead ends
            op = stack.pop()
            if op is None or op in reach:
                continue
            reach.add(op)
            stack.extend(self.producer.get(v) for v in op.data_inputs if v != self.input)
        order = [None] + [op for op in self.ops if op in reach and op.data_inputs and op.op_type != "Shape"]
        self.rank = {op: i for i, op in enumerate(order)}
        self.rank["EXIT"] = len(order)
        self.ipdom = {"EXIT": "EXIT"}
        for op in reversed(order):
            succ = self._succ(op)
            best = succ[0]
            for s in succ[1:]:
                best = self._meet(best, s)
            self.ipdom[op] = best

    def _meet(self, a, b):
        while a != b:
            if self.rank[a] < self.rank[b]:
                a = self.ipdom[a]
            else:
                b = self.ipdom[b]
        return a

    def _chain_after(self, point, stop, shape):
        """Items from ``point``'s output up to (not including) ``stop``: (items, shape, last point)."""
        items = []
        while True:
            succ = self._succ(point)
            if len(succ) == 1:
                nxt = succ[0]
                if nxt == stop:
                    return items, shape, point
                if nxt == "EXIT":
                    raise SpecError(f"{self.file}: the graph's branches do not meet before its output")
                if len(set(nxt.data_inputs)) != 1:
                    self.fail(nxt, "joins a branch that did not fork from its other input; svertka maps "
                                   "residual, concatenation and gate blocks only")
                item, shape, point = self._leaf(nxt, shape)
                if items and items[-1].kind == "residual" and items[-1].post is None \
                        and _under(item.path, items[-1].path) and item.kind == "leaf":
                    items[-1].post = item  # the activation after the add, inside the block (ResNet's relu)
                else:
                    items.append(item)
            else:
                join = self.ipdom[point]
                if join == "EXIT" or join == stop:
                    raise SpecError(f"{self.file}: a value forks into {len(succ)} branches that never meet "
                                    f"in one node; svertka maps branches joined by Add, Concat or Mul")
                item, shape = self._block(point, join, shape)
                items.append(item)
                point = join

    def _leaf(self, op, shape):
        """One node as a leaf (MatMul + Add is one Linear): (item, out shape, last node used)."""
        if op.op_type in JOINS:
            self.fail(op, f"combines the image with a constant{'' if op.op_type != 'Concat' else ' tensor'}; "
                          f"svertka maps {op.op_type} only where it joins two branches of one input")
        fn = OPS.get(op.op_type)
        if fn is None:
            self.fail(op, f"is not an operator svertka maps (it maps {', '.join(OPS)}, "
                          f"and {', '.join(JOINS)} between branches)")
        if len(op.data_inputs) != 1 or op.inputs[0] != op.data_inputs[0]:
            self.fail(op, "takes the image in an input other than its first; svertka maps x @ W, not W @ x")
        try:
            leaf, weights = fn(self, op, shape)
        except SvertkaError as e:
            if str(e).startswith(f"{self.file}: node"):
                raise
            self.fail(op, f"cannot be a spec layer: {e}")
        last = op
        if op.op_type == "MatMul":  # a following Add of a constant vector is the bias
            succ = self._succ(op)
            nxt = succ[0] if len(succ) == 1 else None
            if nxt not in (None, "EXIT") and nxt.op_type == "Add" and len(nxt.data_inputs) == 1:
                other = [v for v in nxt.inputs if v != nxt.data_inputs[0]]
                bias = self.const(nxt, nxt.inputs.index(other[0]), "bias") if len(other) == 1 else None
                if bias is not None:
                    from .onnx_ops import _bias
                    leaf = n.Linear(leaf.out_features, True)
                    weights = {**weights, "bias": _bias(self, nxt, bias, leaf.out_features)}
                    last = nxt
        try:
            out = tuple(leaf.output_shape(tuple(shape)))
        except SvertkaError as e:
            self.fail(op, f"does not fit its input {fmt_shape(shape)}: {e}")
        self.shapes[self._out(last)] = out
        return _Item("leaf", op.path if op.path is not None else _weight_path(op), leaf, weights), out, last

    def _block(self, fork, join, shape):
        """The branches from ``fork`` to ``join``, and the combinator that join makes."""
        value = self.input if fork is None else self._out(fork)
        branches = {}
        for s in self._succ(fork):
            if s == join:
                for i, v in enumerate(join.inputs):
                    if v == value:
                        branches.setdefault(i, ([], shape))
                continue
            if s == "EXIT":
                raise SpecError(f"{self.file}: the graph's output is also the input of another branch")
            if len(set(s.data_inputs)) != 1:
                self.fail(s, "joins branches that did not fork from one value; svertka maps residual, "
                             "concatenation and gate blocks only")
            first, sh, last = self._leaf(s, shape)
            rest, sh, last = self._chain_after(last, join, sh)
            i = join.inputs.index(self._out(last))
            if i in branches:
                self.fail(join, "takes two inputs from one branch")
            branches[i] = ([first] + rest, sh)
        if join.op_type not in JOINS:
            self.fail(join, f"joins {len(branches)} branches; svertka joins branches with Add (residual), "
                            f"Concat or Mul (gate) only")
        if len(branches) != len(join.inputs) or any(not v for v in join.inputs):
            self.fail(join, "mixes a constant into a join of branches")
        order = [branches[i] for i in range(len(join.inputs))]
        path = join.path
        if join.op_type == "Add":
            if len(order) != 2 or order[0][1] != order[1][1]:
                self.fail(join, f"adds branches of shapes {[b[1] for b in order]}; a residual block adds two "
                                f"of one shape")
            (a, sa), (b, sb) = order
            if not a and not b:
                self.fail(join, "adds the input to itself")
            body, short = (a, b) if len(a) >= len(b) else (b, a)
            return _Item("residual", path, parts=[body, short or None]), sa
        if join.op_type == "Concat":
            axis = int(join.attrs.get("axis", 1))
            if axis not in (1, -3) or any(len(s) != 3 for _, s in order):
                self.fail(join, f"concatenates on axis {axis}; svertka maps concatenation of feature maps on "
                                f"channels (axis 1)")
            if len({s[1:] for _, s in order}) != 1:
                self.fail(join, f"concatenates maps of sizes {[s[1:] for _, s in order]}")
            shape = (sum(s[0] for _, s in order), *order[0][1][1:])
            return _Item("concat", path, parts=[b for b, _ in order]), shape
        # Mul: x * branch(x)
        if len(order) != 2 or sum(1 for b, _ in order if not b) != 1:
            self.fail(join, "multiplies two computed branches; "
                            "svertka maps x * gate(x) (squeeze-and-excitation)")
        branch, bshape = next((b, s) for b, s in order if b)
        if len(branch) == 1 and branch[0].kind == "leaf" and isinstance(branch[0].leaf, n.Sigmoid):
            return _Item("leaf", join.path if join.path is not None else branch[0].path, n.SiLU()), shape
        if len(bshape) != len(shape) or any(g not in (1, s) for g, s in zip(bshape, shape)):
            self.fail(join, f"multiplies {shape} by {bshape}, which does not broadcast as a gate")
        return _Item("gate", path, parts=[branch]), shape


class _Namer:
    """Spec children from items, named by their paths relative to the parent
    (nested Sequentials where a path has more parts). An item without such a
    path (a node torch ran in a forward() of its parent, a file without scoped
    names) is named after its kind: relu, residual, concat_1, ..."""

    def children(self, parent, items):
        groups = []  # consecutive items that share the first part of their relative path
        for it in items:
            rel = _rel(parent, it.path)
            head = rel.split(".")[0] if rel else None
            if head is not None and groups and groups[-1][0] == head:
                groups[-1][1].append((it, rel))
            else:
                groups.append((head, [(it, rel)]))
        heads = [h for h, _ in groups if h is not None]
        named = {h for h in heads if heads.count(h) == 1}
        out, used = [], set(named)
        for head, members in groups:
            if head in named:
                if len(members) == 1 and members[0][1] == head:
                    out.append((head, self.build(members[0][0])))
                    continue
                if all(rel != head for _, rel in members):
                    out.append((head, n.Sequential(self.children(join_path(parent, head),
                                                                 [m for m, _ in members]))))
                    continue
            for it, _ in members:
                out.append((_fresh(it.leaf.type.lower() if it.kind == "leaf" else it.kind, used),
                            self.build(it)))
        return out

    def build(self, it):
        if it.kind == "leaf":
            return it.leaf
        if it.kind == "gate":
            return n.Gate(n.Sequential(self.children(it.path, it.parts[0])))
        if it.kind == "concat":
            return n.Concat(self._named_parts(it.path, it.parts, identity_ok=True))
        body = self.children(it.path, it.parts[0])
        names = {name for name, _ in body}
        shortcut, shortcut_name = None, "downsample"
        if it.parts[1]:
            (shortcut_name, shortcut), = self._named_parts(it.path, [it.parts[1]], taken=names)
        post, post_name = None, "relu"
        if it.post is not None:
            post = self.build(it.post)
            rel = _rel(it.path, it.post.path)
            post_name = rel if rel and "." not in rel else "post"
        if post_name in names | {shortcut_name}:
            post_name = next(p for p in ("post", "post_act", "post_") if p not in names | {shortcut_name})
        return n.Residual(n.Sequential(body), shortcut, post, shortcut_name=shortcut_name,
                          post_name=post_name)

    def _named_parts(self, parent, parts, identity_ok=False, taken=frozenset()):
        """(name, node) for each branch: its common first path part, else branch<i>."""
        out, used = [], set(taken)
        for i, items in enumerate(parts):
            if not items:
                node, head = n.Identity(), None
            else:
                rels = [_rel(parent, it.path) for it in items]
                heads = {r.split(".")[0] for r in rels if r}
                head = heads.pop() if len(heads) == 1 and all(rels) else None
                if head is not None and len(items) == 1 and rels[0] == head:
                    node = self.build(items[0])
                elif head is not None and all(r != head for r in rels):
                    node = n.Sequential(self.children(join_path(parent, head), items))
                else:
                    head = None
                    node = (self.build(items[0]) if len(items) == 1
                            else n.Sequential(self.children(None, items)))
            name = head if head and head not in used else next(
                c for c in (f"branch{i + 1}", f"branch{i + 1}_", f"b{i + 1}") if c not in used)
            used.add(name)
            out.append((name, node))
        return out


def _fresh(base: str, used: set) -> str:
    name, k = base, 0
    while name in used:
        k += 1
        name = f"{base}_{k}"
    used.add(name)
    return name


def _all_leaves(items):
    for it in items:
        if it.kind == "leaf":
            yield it
        for part in it.parts:
            yield from _all_leaves(part or [])
        if it.post is not None:
            yield it.post


def _rel(parent, path):
    """``path`` relative to ``parent`` ("" is the root); None if it is not below it."""
    if parent is None or path is None:
        return None
    if parent == "":
        return path or None
    return path[len(parent) + 1:] or None if path.startswith(parent + ".") else None


def _under(path, parent) -> bool:
    return bool(_rel(parent, path)) and "." not in _rel(parent, path)


def _scope_path(name: str) -> str | None:
    """The module path torch's exporter wrote into a node name:
    ``/features/features.3/conv/conv.0/Conv`` -> ``features.3.conv.0``."""
    if not name or not name.startswith("/"):
        return None
    scopes = name.split("/")[1:-1]
    path, prev = [], None
    for s in scopes:
        if not s:
            return None
        if prev is not None and s.startswith(prev + "."):
            path.append(s[len(prev) + 1:])
        else:
            path.append(s)
        prev = s
    full = ".".join(path)
    return full if all(p for p in full.split(".")) or not full else None


def _weight_path(op) -> str | None:
    """For files without scoped node names: ``conv1.weight`` -> ``conv1``."""
    w = op.inputs[1] if len(op.inputs) > 1 else ""
    return w.rsplit(".", 1)[0] if w.endswith(".weight") and "::" not in w else None
