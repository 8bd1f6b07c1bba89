"""Backend adapters: the few verbs the shared training loop needs.

An adapter holds the model, its optimizer and the whole dataset as uint8 on
the backend's device. The loop asks it for batches by index, for one training
step, for logits, and for its state as NumPy arrays (for checkpoints).
``Adapter`` below is the contract: what every backend must supply is marked
there, and what both backends do alike is written there once.

    adapter = make_adapter(net, cfg, mean, std, task)  # cfg.backend picks the class
    adapter.add_split(name, images_uint8_nhwc, targets)  # targets: {name: array}, first dim N
    x, t = adapter.batch(name, idx, aug, rng)     # float, normalised, augmented; the batch's targets
    loss, stats = adapter.train_step(x, t)        # the task's loss; backend scalars (adapter.value reads)
    outputs = adapter.logits(name, idx)           # NumPy float32 raw outputs, eval mode, no autograd
"""
from __future__ import annotations

import numpy as np

from ..backends import get_backend
from ..errors import UsageError, WeightsError
from ..threads import ThreadPolicy
from .amp import resolve_amp

OPTIM_PREFIX = "__optim__."


def param_groups(named_params, weight_decay: float, no_decay_norm_bias: bool) -> list[dict]:
    """Split parameters into a decayed group and (if asked) an undecayed one
    holding biases and norm weights: every parameter with fewer than 2 dimensions."""
    decay, no_decay = [], []
    for name, p in named_params:
        ndim = len(p.shape)
        (no_decay if no_decay_norm_bias and ndim <= 1 else decay).append((name, p))
    groups = [{"params": [p for _, p in decay], "names": [n for n, _ in decay], "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": [p for _, p in no_decay], "names": [n for n, _ in no_decay],
                       "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def split_state(obj, prefix=""):
    """Optimizer state_dict -> (flat {key: ndarray}, JSON-able skeleton)."""
    tensors = {}

    def walk(v, key):
        if hasattr(v, "detach"):  # torch tensor
            tensors[key] = v.detach().cpu().numpy()
            return {"__tensor__": key}
        if isinstance(v, np.ndarray):
            tensors[key] = v
            return {"__tensor__": key}
        if isinstance(v, dict):
            return {"__dict__": [[walk(k, f"{key}.k{i}"), walk(x, f"{key}.{k}")]
                                 for i, (k, x) in enumerate(v.items())]}
        if isinstance(v, (list, tuple)):
            return {"__list__" if isinstance(v, list) else "__tuple__":
                    [walk(x, f"{key}.{i}") for i, x in enumerate(v)]}
        if isinstance(v, (np.integer, np.floating, np.bool_)):
            return v.item()
        return v

    return tensors, walk(obj, prefix.rstrip("."))


def join_state(skeleton, tensors, to_tensor=lambda a: a):
    def walk(v):
        if isinstance(v, dict):
            if "__tensor__" in v:
                return to_tensor(tensors[v["__tensor__"]])
            if "__dict__" in v:
                return {walk(k): walk(x) for k, x in v["__dict__"]}
            if "__list__" in v:
                return [walk(x) for x in v["__list__"]]
            if "__tuple__" in v:
                return tuple(walk(x) for x in v["__tuple__"])
        return v
    return walk(skeleton)


def check_meta(net, meta, source) -> None:
    """One-line errors for weights saved from another model or class count."""
    meta = meta or {}
    got, nc = meta.get("model"), meta.get("num_classes")
    if got and net.name and got != net.name:
        raise WeightsError(f"{source} is for model {got}, not {net.name}; pass --model {got}, "
                           f"or weights saved from {net.name}")
    if nc is not None and int(nc) != int(net.num_classes):
        raise WeightsError(f"num_classes mismatch: {source} has {int(nc)} classes, the model "
                           f"{net.num_classes}; use weights trained on this data, or matching --num-classes")


class Adapter:
    """What the training loop calls. A backend subclass sets ``backend`` and
    supplies the methods that raise NotImplementedError here."""

    backend = ""
    threads = None  # a svertka.threads.ThreadPolicy where the backend has a thread pool to size
    amp_choice = None  # a train.amp.AmpChoice where the backend has autocast

    def __init__(self, net, cfg, mean, std, task=None):
        if task is None:
            from ..tasks.task import ClassifyTask
            task = ClassifyTask(cfg)
        self.net, self.cfg, self.task = net, cfg, task
        self.scale = np.asarray([1 / 255 / s for s in std], np.float32)
        self.shift = np.asarray([-m / s for m, s in zip(mean, std)], np.float32)
        self.mean, self.std = tuple(mean), tuple(std)
        self.data = {}
        self.targets_np = {}  # split name -> {target name: NumPy array} (metrics are computed there)
        self.base_lrs = []
        self.optimizer = None
        self.model = None  # set by the subclass: a module with named_parameters() and state_dict()
        self.optim = None  # the backend's optimizer package (SGD, Adam, AdamW)

    # ---- written once for both backends

    def make_optimizer(self) -> None:
        cfg = self.cfg
        groups = param_groups(self.model.named_parameters(), cfg.weight_decay, cfg.no_decay_norm_bias)
        if not groups:
            raise UsageError(f"{self.net.name or 'the model'} has no trainable parameters; nothing to train")
        self.group_names = [g.pop("names") for g in groups]
        if cfg.opt in ("sgd", "nesterov"):
            self.optimizer = self.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                                            nesterov=cfg.opt == "nesterov" and cfg.momentum > 0)
        else:  # each group carries its own weight_decay, so the classes' defaults never apply
            self.optimizer = (self.optim.Adam if cfg.opt == "adam" else self.optim.AdamW)(groups, lr=cfg.lr)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]

    def add_split(self, name: str, images, targets: dict) -> None:
        """Hold a split on the device, and its targets as NumPy for the metrics."""
        self.set_data(name, images, targets)
        self.targets_np[name] = targets

    def set_lr(self, factor: float) -> None:
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * factor

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @staticmethod
    def value(v) -> float:
        """A loss or count from ``train_step`` as a Python float (syncs a GPU)."""
        return float(v)

    def optim_state(self):
        """(flat {name: ndarray}, JSON skeleton) of the optimizer, for a checkpoint."""
        return split_state(self.optimizer.state_dict(), "optim")

    def load_optim_state(self, tensors, skeleton) -> None:
        sd = join_state(skeleton, tensors, self.from_numpy)
        sd["state"] = {int(k): v for k, v in sd["state"].items()}
        self.optimizer.load_state_dict(sd)

    # ---- each backend supplies these

    def from_numpy(self, a: np.ndarray):
        """A backend array holding a copy of ``a``."""
        raise NotImplementedError

    def set_data(self, name: str, images, targets: dict) -> None:
        raise NotImplementedError

    def seed_epoch(self, seed: int, epoch: int) -> None:
        """Reseed the backend's own RNG (dropout) for this epoch."""
        raise NotImplementedError

    def batch(self, name: str, idx, aug=None, rng=None, epoch: int = 0):
        raise NotImplementedError

    def batch_of(self, images, targets: dict, aug=None, rng=None, idx=None, epoch: int = 0):
        """Like ``batch``, for a uint8 N x H x W x C NumPy batch and its NumPy targets handed in
        (a streamed split)."""
        raise NotImplementedError

    def train_step(self, x, targets: dict):
        """One optimizer step on the task's loss; returns (summed loss, the task's summed
        stats) as backend scalars."""
        raise NotImplementedError

    def logits(self, name: str, idx, tta: str = "none") -> np.ndarray:
        raise NotImplementedError

    def logits_of(self, x_float_nchw: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def logits_u8(self, images: np.ndarray, tta: str = "none") -> np.ndarray:
        """Like ``logits``, for a uint8 N x H x W x C NumPy batch handed in (a streamed split)."""
        raise NotImplementedError

    def model_state(self) -> dict:
        """The model's state_dict as NumPy arrays."""
        raise NotImplementedError

    def load_model_state(self, state: dict, meta: dict | None = None, source: str = "checkpoint") -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------- torch


class TorchAdapter(Adapter):
    backend = "torch"

    def __init__(self, net, cfg, mean, std, task=None):
        super().__init__(net, cfg, mean, std, task)
        import torch

        self.torch, self.backend_pkg = torch, get_backend("torch")
        self.optim = torch.optim
        self.threads = ThreadPolicy(cfg.threads, torch.set_num_threads)
        self.threads.start()
        dev = cfg.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.device = torch.device(dev)
            torch.empty(1, device=self.device)
        except (RuntimeError, AssertionError) as e:
            raise UsageError(f"--device {cfg.device!r} is not available here "
                             f"({str(e).splitlines()[0][:80]}); "
                             f"use --device cpu or auto") from None
        torch.manual_seed(cfg.seed)
        self.model = self.backend_pkg.compile(net).to(self.device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.run_model = torch.compile(self.model) if cfg.compile else self.model
        self.amp_choice = resolve_amp(cfg, torch, self.device)
        self.amp = torch.bfloat16 if self.amp_choice.amp == "bf16" else None
        self._scale = torch.tensor(self.scale, device=self.device).view(1, -1, 1, 1)
        self._shift = torch.tensor(self.shift, device=self.device).view(1, -1, 1, 1)

    def from_numpy(self, a):
        return self.torch.from_numpy(np.array(a))

    def set_data(self, name, images, targets):
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(self.device)
        t = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in targets.items()}
        self.data[name] = (x, t)

    def seed_epoch(self, seed: int, epoch: int) -> None:
        self.torch.manual_seed(seed * 100_003 + epoch)

    def _float(self, xu8, aug, rng, index=None, epoch=0):
        x = xu8.float()
        if aug is not None and len(aug):
            x = aug(x.mul_(1 / 255), rng=rng, index=index, epoch=epoch)
            x = (x * 255).mul_(self._scale).add_(self._shift)
        else:
            x = x.mul_(self._scale).add_(self._shift)
        return x.contiguous(memory_format=self.memory_format)

    def batch(self, name, idx, aug=None, rng=None, epoch=0):
        x, t = self.data[name]
        i = self.torch.from_numpy(np.asarray(idx, np.int64)).to(self.device)
        return self._float(x[i], aug, rng, idx, epoch), {k: v[i] for k, v in t.items()}

    def _nchw(self, images):
        # the layout set_data holds, so a streamed batch computes exactly as an in-memory one
        return self.torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).contiguous()

    def batch_of(self, images, targets, aug=None, rng=None, idx=None, epoch=0):
        t = {k: self.torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in targets.items()}
        return self._float(self._nchw(images), aug, rng, idx, epoch), t

    def train_step(self, x, targets):
        torch, F = self.torch, self.torch.nn.functional
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp is not None):
            out = self.run_model(x)
            loss, stats = self.task.loss(F, out, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        stats = {k: v.detach() if hasattr(v, "detach") else v for k, v in stats.items()}
        return loss.detach() * len(x), stats

    def logits(self, name, idx, tta: str = "none"):
        x, _ = self.data[name]
        return self._logits(x[self.torch.from_numpy(np.asarray(idx, np.int64)).to(self.device)], tta)

    def logits_u8(self, images, tta: str = "none"):
        return self._logits(self._nchw(images), tta)

    def _logits(self, xu8, tta):
        torch = self.torch
        self.model.eval()
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.amp is not None):
            xb = self._float(xu8, None, None)
            out = self.run_model(xb).float()
            if tta == "flip":
                out = (out + self.run_model(xb.flip(-1)).float()) / 2
        return out.cpu().numpy()

    def logits_of(self, x_float_nchw: np.ndarray):
        torch = self.torch
        self.model.eval()
        with torch.inference_mode():
            return self.run_model(torch.from_numpy(x_float_nchw).to(self.device)).float().cpu().numpy()

    def model_state(self) -> dict:
        return {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}

    def load_model_state(self, state: dict, meta: dict | None = None, source: str = "checkpoint") -> None:
        check_meta(self.net, meta, source)
        tensors = {k: self.from_numpy(v) for k, v in state.items()}
        tensors = self.backend_pkg.check_state_dict(self.model, tensors, meta or {}, source)
        self.model.load_state_dict(tensors, strict=True)


# ---------------------------------------------------------------------- numpy


class NumpyAdapter(Adapter):
    backend = "numpy"

    def __init__(self, net, cfg, mean, std, task=None):
        super().__init__(net, cfg, mean, std, task)
        self.engine = get_backend("numpy")
        self.optim = self.engine.optim
        self.engine.manual_seed(cfg.seed)
        self.model = self.engine.compile(net)
        self._scale = self.scale.reshape(1, -1, 1, 1)
        self._shift = self.shift.reshape(1, -1, 1, 1)

    def from_numpy(self, a):
        return np.array(a)

    def set_data(self, name, images, targets):
        self.data[name] = (np.ascontiguousarray(images.transpose(0, 3, 1, 2)), dict(targets))

    def seed_epoch(self, seed: int, epoch: int) -> None:
        self.engine.manual_seed(seed * 100_003 + epoch)

    def _float(self, xu8, aug, rng, index=None, epoch=0):
        x = xu8.astype(np.float32)
        if aug is not None and len(aug):
            x = aug(x * np.float32(1 / 255), rng=rng, index=index, epoch=epoch) * np.float32(255)
        x *= self._scale
        x += self._shift
        return x

    def batch(self, name, idx, aug=None, rng=None, epoch=0):
        x, t = self.data[name]
        return self._float(x[idx], aug, rng, idx, epoch), {k: v[idx] for k, v in t.items()}

    def batch_of(self, images, targets, aug=None, rng=None, idx=None, epoch=0):
        x = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        return self._float(x, aug, rng, idx, epoch), dict(targets)

    def train_step(self, x, targets):
        F = self.engine.functional
        self.model.train()
        out = self.model(self.engine.Tensor(x))
        loss, stats = self.task.loss(F, out, targets)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        tensor = self.engine.Tensor
        return float(loss.data) * len(x), {k: float(v.data if isinstance(v, tensor) else v)
                                           for k, v in stats.items()}

    def logits(self, name, idx, tta: str = "none"):
        x, _ = self.data[name]
        return self.logits_of(self._float(x[idx], None, None), tta)

    def logits_u8(self, images, tta: str = "none"):
        x = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        return self.logits_of(self._float(x, None, None), tta)

    def logits_of(self, x, tta: str = "none"):
        self.model.eval()
        with self.engine.no_grad():
            out = self.model(self.engine.Tensor(x)).data
            if tta == "flip":
                out = (out + self.model(self.engine.Tensor(np.ascontiguousarray(x[..., ::-1]))).data) / 2
        return np.asarray(out, np.float32)

    def model_state(self) -> dict:
        return {k: np.array(v, copy=True) for k, v in self.model.state_dict().items()}

    def load_model_state(self, state: dict, meta: dict | None = None, source: str = "checkpoint") -> None:
        check_meta(self.net, meta, source)
        try:
            self.model.load_state_dict(state, strict=True)
        except WeightsError as e:
            raise WeightsError(f"{source}: {e}") from None


ADAPTERS = {"torch": TorchAdapter, "numpy": NumpyAdapter}


def make_adapter(net, cfg, mean, std, task=None) -> Adapter:
    """The adapter of ``cfg.backend`` for ``net``, training ``task`` (classification when None)."""
    get_backend(cfg.backend)  # a one-line error for an unknown name or a missing torch
    return ADAPTERS[cfg.backend](net, cfg, mean, std, task)
