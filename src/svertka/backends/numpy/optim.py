"""SGD, Adam and AdamW with torch.optim's update rules, step for step.

The API is torch's: ``opt = SGD(model.parameters(), lr=0.1, momentum=0.9)``,
``opt.zero_grad()``, ``loss.backward()``, ``opt.step()``. Hyper-parameters
live in ``opt.param_groups`` (a list of dicts), so a scheduler can change
``group["lr"]`` between steps.
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import SvertkaError
from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


class Optimizer:
    defaults: dict = {}

    def __init__(self, params, **hyper):
        params = list(params)
        if not params:
            raise SvertkaError(f"{type(self).__name__} got an empty parameter list")
        if isinstance(params[0], dict):
            groups = [dict(g) for g in params]
        else:
            groups = [{"params": params}]
        self.param_groups = []
        for g in groups:
            g["params"] = list(g["params"])
            for p in g["params"]:
                if not isinstance(p, Tensor):
                    raise SvertkaError(f"{type(self).__name__} expects engine Tensors, got "
                                       f"{type(p).__name__}")
            for k, v in {**self.defaults, **hyper}.items():
                g.setdefault(k, v)
            if g["lr"] < 0:
                raise SvertkaError(f"learning rate must be >= 0, got {g['lr']}")
            self.param_groups.append(g)
        self.state: dict[int, dict] = {}

    def zero_grad(self) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None

    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                self._update(p, p.grad, self.state.setdefault(id(p), {}), group)

    def _update(self, p: Tensor, grad: np.ndarray, state: dict, group: dict) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Per-parameter state in parameter order, plus the hyper-parameters."""
        order = [p for g in self.param_groups for p in g["params"]]
        return {"state": {i: {k: (v.copy() if isinstance(v, np.ndarray) else v)
                              for k, v in self.state[id(p)].items()}
                          for i, p in enumerate(order) if id(p) in self.state},
                "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]}

    def load_state_dict(self, sd: dict) -> None:
        order = [p for g in self.param_groups for p in g["params"]]
        for i, st in sd["state"].items():
            self.state[id(order[int(i)])] = {k: (np.array(v) if isinstance(v, np.ndarray) else v)
                                             for k, v in st.items()}
        for g, saved in zip(self.param_groups, sd["param_groups"]):
            g.update(saved)


class SGD(Optimizer):
    """torch.optim.SGD: v = momentum * v + (1 - dampening) * (g + wd * p)
    (v = g on the first step); p -= lr * (g + momentum * v if nesterov else v)."""

    defaults = {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0}

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise SvertkaError("Nesterov momentum needs momentum > 0 and dampening 0")
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                         weight_decay=weight_decay)

    def _update(self, p, grad, state, group):
        d = grad
        if group["weight_decay"]:
            d = d + group["weight_decay"] * p.data
        mu = group["momentum"]
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(d, copy=True)
            else:
                buf *= mu
                buf += (1 - group["dampening"]) * d
            d = d + mu * buf if group["nesterov"] else buf
        p.data -= group["lr"] * d


class Adam(Optimizer):
    """torch.optim.Adam (amsgrad=False). ``weight_decay`` is L2: added to the gradient."""

    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=None):
        if weight_decay is None:
            weight_decay = 1e-2 if self.decoupled else 0.0
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    def _update(self, p, grad, state, group):
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if wd:
            if self.decoupled:  # AdamW: shrink the weights, leave the gradient alone
                p.data *= 1 - lr * wd
            else:
                grad = grad + wd * p.data
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (1 - b1) * (grad - m)  # torch's lerp: m + (1 - b1) * (g - m)
        v *= b2
        v += (1 - b2) * grad * grad
        step_size = lr / (1 - b1 ** t)
        denom = np.sqrt(v) / math.sqrt(1 - b2 ** t) + eps
        p.data -= step_size * (m / denom)


class AdamW(Adam):
    """torch.optim.AdamW: decoupled weight decay p *= 1 - lr * wd, default wd 0.01."""

    defaults = {**Adam.defaults, "weight_decay": 1e-2}
    decoupled = True
