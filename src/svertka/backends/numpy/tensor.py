"""A NumPy array with reverse-mode autograd, in the style of micrograd.

Every op builds its output with ``Tensor._make(data, parents, backward)``;
``backward`` is a closure written right beside the forward. It receives the
gradient of the loss with respect to the output and returns one gradient per
parent (None where a parent needs none). ``Tensor.backward()`` walks the graph
in reverse topological order and calls the closures.

The API mirrors torch's (``x.sum(1, keepdims=True)``, ``x.reshape(...)``,
``x @ w``, ``with no_grad():``) so what a student learns here transfers.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import numpy as np

from ...errors import ShapeError, SvertkaError

__all__ = ["Tensor", "no_grad", "is_grad_enabled", "tensor", "unbroadcast"]

_GRAD_ENABLED = True


@contextlib.contextmanager
def no_grad():
    """Inside this block ops record no graph: inference needs no backward."""
    global _GRAD_ENABLED
    prev, _GRAD_ENABLED = _GRAD_ENABLED, False
    try:
        yield
    finally:
        _GRAD_ENABLED = prev


def is_grad_enabled() -> bool:
    return _GRAD_ENABLED


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``grad`` down to ``shape``: the backward of NumPy broadcasting.
    A broadcast copies a value to many places, so its gradient adds them up."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


def _as_array(value, dtype=None) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.data
    arr = np.asarray(value)
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    elif arr.dtype.kind in "iub" or arr.dtype == np.float64 and dtype is None and arr.ndim == 0:
        arr = arr.astype(np.float32)
    return arr


class Tensor:
    """An n-d array plus what autograd needs: ``grad``, the parents and the
    backward closure. Float32 unless built from a float64 array."""

    __slots__ = ("data", "grad", "requires_grad", "_node", "__weakref__")
    __array_priority__ = 100  # ndarray + Tensor -> Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        arr = data.data if isinstance(data, Tensor) else np.asarray(data, dtype=dtype)
        if dtype is None and arr.dtype.kind in "iub":
            arr = arr.astype(np.float32)
        elif dtype is None and arr.dtype.kind == "f" and arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float32)
        self.data: np.ndarray = arr
        self.grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)
        self._node: _Node | None = None  # set for op outputs (torch's grad_fn)

    # ------------------------------------------------------------------ graph
    @staticmethod
    def _make(data: np.ndarray, parents: Sequence["Tensor"], backward: Callable, op: str = "") -> "Tensor":
        """The output of an op. Records the graph only when some parent needs a gradient.

        The graph links ``_Node``s, not Tensors: a node holds its backward
        closure and its parents' nodes, never their data. An intermediate
        array stays alive only if a closure saved it (as torch's saved
        tensors), so memory is what backward needs, not every activation.
        ``op`` names the op for the reader of the call site; nothing stores it."""
        out = Tensor.__new__(Tensor)
        out.data, out.grad = data, None
        needs = _GRAD_ENABLED and any(p.requires_grad for p in parents)
        out.requires_grad = needs
        out._node = _Node(backward, [p._grad_node() for p in parents],
                          [p.data.shape for p in parents]) if needs else None
        return out

    def _grad_node(self) -> "_Node | None":
        if not self.requires_grad:
            return None
        if self._node is None:  # a leaf: its node writes .grad
            return _Node(None, [], [], leaf=self)
        return self._node

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` that requires it.

        Intermediate gradients and the graph are freed as soon as they are
        used, as torch does, so a second backward needs a new forward."""
        if not self.requires_grad:
            raise SvertkaError("backward() on a tensor that does not require grad: no parameter "
                               "or input with requires_grad=True reaches it (inside no_grad()?)")
        if grad is None:
            if self.data.size != 1:
                raise SvertkaError(f"backward() without a gradient needs a scalar, got shape "
                                   f"{self.shape}; pass grad= of the same shape")
            grad = np.ones_like(self.data)
        else:
            grad = _as_array(grad, self.data.dtype)
            if grad.shape != self.data.shape:
                raise SvertkaError(f"backward(): grad shape {grad.shape} does not match tensor "
                                   f"shape {self.shape}")
        root = self._grad_node()
        grads: dict[int, np.ndarray] = {id(root): grad}
        for node in reversed(_topo(root)):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node.leaf is not None:
                t = node.leaf
                t.grad = g.copy() if t.grad is None else t.grad + g
                continue
            if node.backward is None:
                raise SvertkaError("backward() through a graph that was already freed; run the "
                                   "forward pass again")
            parent_grads = node.backward(g)
            if len(node.parents) == 1 and not isinstance(parent_grads, (tuple, list)):
                parent_grads = (parent_grads,)
            for p, pg, shape in zip(node.parents, parent_grads, node.shapes):
                if p is None or pg is None:
                    continue
                if pg.shape != shape:  # a safety net: the op forgot to unbroadcast
                    pg = unbroadcast(pg, shape)
                old = grads.get(id(p))
                # never add in place: a closure may hand the same array to two parents
                grads[id(p)] = pg if old is None else old + pg
            node.backward, node.parents = None, []  # free what the closure saved

    # ------------------------------------------------------------- basics
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    def numel(self) -> int:
        return self.data.size

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> "Tensor":
        return Tensor(self.data)

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        self.requires_grad = flag
        return self

    def zero_grad(self) -> None:
        self.grad = None

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        rg = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}, dtype={self.dtype}{rg})"

    def _lift(self, other) -> "Tensor":
        if isinstance(other, Tensor):
            return other
        return Tensor(np.asarray(other, dtype=self.data.dtype))

    def _broadcast_check(self, other: "Tensor", op: str) -> None:
        try:
            np.broadcast_shapes(self.shape, other.shape)
        except ValueError:
            raise ShapeError(f"{op}: shapes {self.shape} and {other.shape} do not broadcast") from None

    # ----------------------------------------------------- elementwise ops
    def __add__(self, other):
        other = self._lift(other)
        self._broadcast_check(other, "add")
        a, b = self.shape, other.shape

        def backward(g):
            return unbroadcast(g, a), unbroadcast(g, b)
        return Tensor._make(self.data + other.data, (self, other), backward, "add")

    __radd__ = __add__

    def __mul__(self, other):
        other = self._lift(other)
        self._broadcast_check(other, "mul")
        x, y = self.data, other.data
        nx, ny = self.requires_grad, other.requires_grad

        def backward(g):
            return (unbroadcast(g * y, x.shape) if nx else None,
                    unbroadcast(g * x, y.shape) if ny else None)
        return Tensor._make(x * y, (self, other), backward, "mul")

    __rmul__ = __mul__

    def __neg__(self):
        return Tensor._make(-self.data, (self,), lambda g: -g, "neg")

    def __sub__(self, other):
        other = self._lift(other)
        self._broadcast_check(other, "sub")
        a, b = self.shape, other.shape

        def backward(g):
            return unbroadcast(g, a), unbroadcast(-g, b)
        return Tensor._make(self.data - other.data, (self, other), backward, "sub")

    def __rsub__(self, other):
        return self._lift(other) - self

    def __truediv__(self, other):
        other = self._lift(other)
        self._broadcast_check(other, "div")
        x, y = self.data, other.data
        out = x / y
        nx, ny = self.requires_grad, other.requires_grad

        def backward(g):
            return (unbroadcast(g / y, x.shape) if nx else None,
                    unbroadcast(-g * out / y, y.shape) if ny else None)
        return Tensor._make(out, (self, other), backward, "div")

    def __rtruediv__(self, other):
        return self._lift(other) / self

    def __pow__(self, k):
        if isinstance(k, Tensor):
            raise SvertkaError("Tensor ** Tensor is not supported; use exp(k * log(x))")
        x = self.data
        k = float(k)
        return Tensor._make(x ** k, (self,), lambda g: g * k * x ** (k - 1), f"pow{k}")

    def __matmul__(self, other):
        other = self._lift(other)
        x, y = self.data, other.data
        if x.ndim < 2 or y.ndim < 2 or x.shape[-1] != y.shape[-2]:
            raise ShapeError(f"matmul: shapes {x.shape} @ {y.shape} do not fit")

        nx, ny = self.requires_grad, other.requires_grad

        def backward(g):
            gx = unbroadcast(g @ np.swapaxes(y, -1, -2), x.shape) if nx else None
            gy = unbroadcast(np.swapaxes(x, -1, -2) @ g, y.shape) if ny else None
            return gx, gy
        return Tensor._make(x @ y, (self, other), backward, "matmul")

    def exp(self):
        out = np.exp(self.data)
        return Tensor._make(out, (self,), lambda g: g * out, "exp")

    def log(self):
        x = self.data
        return Tensor._make(np.log(x), (self,), lambda g: g / x, "log")

    def sqrt(self):
        out = np.sqrt(self.data)
        return Tensor._make(out, (self,), lambda g: g * 0.5 / out, "sqrt")

    def abs(self):
        x = self.data
        return Tensor._make(np.abs(x), (self,), lambda g: g * np.sign(x), "abs")

    def relu(self):
        mask = self.data > 0
        return Tensor._make(self.data * mask, (self,), lambda g: g * mask, "relu")

    def sigmoid(self):
        from .functional import sigmoid
        return sigmoid(self)

    def tanh(self):
        out = np.tanh(self.data)
        return Tensor._make(out, (self,), lambda g: g * (1 - out * out), "tanh")

    # ---------------------------------------------------------- reductions
    def sum(self, axis=None, keepdims: bool = False):
        shape = self.shape

        def backward(g):
            if axis is not None and not keepdims:
                g = np.expand_dims(g, axis)
            return np.broadcast_to(g, shape)
        return Tensor._make(np.asarray(self.data.sum(axis=axis, keepdims=keepdims)), (self,),
                            backward, "sum")

    def mean(self, axis=None, keepdims: bool = False):
        n = self.data.size if axis is None else int(np.prod([self.shape[a] for a in np.atleast_1d(axis)]))
        return self.sum(axis, keepdims) * (1.0 / n)

    def max(self, axis=None, keepdims: bool = False):
        x = self.data
        out = x.max(axis=axis, keepdims=True)

        def backward(g):
            if axis is not None and not keepdims:
                g = np.expand_dims(g, axis)
            mask = x == out
            # ties share the gradient equally
            return g * mask / mask.sum(axis=axis, keepdims=True)
        res = out if keepdims else np.squeeze(out, axis=axis)
        return Tensor._make(np.asarray(res), (self,), backward, "max")

    # ---------------------------------------------------------- shape ops
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        old = self.shape
        return Tensor._make(self.data.reshape(shape), (self,), lambda g: g.reshape(old), "reshape")

    view = reshape

    def flatten(self, start_dim: int = 0):
        return self.reshape(*self.shape[:start_dim], -1)

    def permute(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        inv = np.argsort(axes)
        return Tensor._make(self.data.transpose(axes), (self,), lambda g: g.transpose(inv), "permute")

    def transpose(self, a: int = -2, b: int = -1):
        axes = list(range(self.ndim))
        axes[a], axes[b] = axes[b], axes[a]
        return self.permute(axes)

    @property
    def T(self):
        return self.permute(tuple(reversed(range(self.ndim))))

    def __getitem__(self, idx):
        if isinstance(idx, Tensor):
            idx = idx.data
        shape, dtype = self.shape, self.dtype

        def backward(g):
            full = np.zeros(shape, dtype)
            np.add.at(full, idx, g)  # fancy indices may repeat; basic slices are cheap anyway
            return full
        return Tensor._make(np.asarray(self.data[idx]), (self,), backward, "getitem")

    # comparisons give plain arrays: they have no gradient
    def __gt__(self, other):
        return self.data > _as_array(other)

    def __lt__(self, other):
        return self.data < _as_array(other)

    def argmax(self, axis=None):
        return self.data.argmax(axis=axis)

    def astype(self, dtype):
        src = self.dtype
        return Tensor._make(self.data.astype(dtype), (self,), lambda g: g.astype(src), "astype")


class _Node:
    """One recorded op: its backward closure and its parents' nodes."""

    __slots__ = ("backward", "parents", "shapes", "leaf")

    def __init__(self, backward, parents, shapes, leaf=None):
        self.backward, self.parents, self.shapes, self.leaf = backward, parents, shapes, leaf


def _topo(root: _Node) -> list[_Node]:
    """Parents before children (iterative: deep nets overflow recursion).
    A leaf Tensor used twice gets two leaf nodes; both write its .grad."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for p in node.parents:
            if p is not None and id(p) not in seen:
                stack.append((p, False))
    return order


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)
