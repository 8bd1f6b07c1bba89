"""Training on several processes: torchrun and DistributedDataParallel.

    torchrun --nproc-per-node 2 -m svertka train lenet5 --data fashion-mnist
    svertka train lenet5 --nproc 2          # the same: svertka starts torchrun itself

The loop asks ``current()`` for the job it runs in: a ``Single`` process
(every hook a no-op, so a plain run is unchanged bit for bit), or ``Ranks``
when torchrun started it (RANK / WORLD_SIZE in the environment). ``session``
sets that up around one training run. Conventions:

- ``--batch-size`` is the GLOBAL batch. Each step, every rank draws the same
  seeded permutation and takes its own slice of the step's batch; DDP averages
  the gradients, so a step sees the same images, the same mean gradient (to
  float rounding) and the same LR as one process at that batch size.
- Augmentation and dropout are seeded per (seed, epoch, rank): reproducible,
  and different on each rank's images.
- Rank 0 alone writes the run folder, progress and checkpoints; losses, counts
  and images/s are summed over ranks; evaluation is split over the ranks.
- gloo on CPU, nccl on CUDA (one GPU per rank: cuda:LOCAL_RANK).
- Threads: each rank takes its share of the cores (cores / ranks on this
  machine), fixed: following the load, as a single process does, would count
  the sibling ranks as other load.
- The NumPy engine stays single-process.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import signal
import sys
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import numpy as np

from ..errors import SvertkaError, UsageError, WeightsError
from ..threads import ThreadPolicy, available_cores

STOP_WAIT_S = 30  # how long a failed rank waits for the others to fail alike before it exits
DEFAULT_TIMEOUT_S = 300  # a collective that waits longer for a hung rank fails (a dead one fails at once)


class RanksDivergedError(SvertkaError):
    """The ranks' weights no longer agree bit for bit."""


def launched_by_torchrun(env=None) -> bool:
    env = os.environ if env is None else env
    return "RANK" in env and "WORLD_SIZE" in env


def world_from_env(env=None) -> int:
    env = os.environ if env is None else env
    try:
        return int(env.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


class Single:
    """One process: the hooks the loop calls, all doing nothing."""

    world, rank, local_rank, local_world = 1, 0, 0, 1
    backend = ""
    module = None  # the DistributedDataParallel wrapper, once ``wrap`` made one

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, idx):
        """This rank's part of one step's (global) batch of indices."""
        return idx

    def rows(self, n: int) -> tuple[int, int]:
        """This rank's contiguous share [start, stop) of ``n`` evaluation rows."""
        return 0, n

    def all_reduce(self, values):
        """Each value summed over the ranks (floats, in float64)."""
        return [float(v) for v in values]

    def gather_blocks(self, blocks: list) -> list:
        """Every rank's list of blocks (of its ``rows`` share, in order), joined in rank order, on
        every rank: the blocks of the whole split, in row order."""
        return blocks

    def broadcast(self, obj):
        """Rank 0's ``obj`` (a small picklable value), on every rank."""
        return obj

    def barrier(self) -> None:
        pass

    def aug_rng(self, rng, seed: int, epoch: int):
        """The generator that draws this rank's augmentation in ``epoch``."""
        return rng

    def seed_epoch(self, seed: int, epoch: int) -> None:
        """Reseed torch (dropout) per rank, after the adapter's per-epoch seed."""

    def device(self, dev: str) -> str:
        return dev

    def wrap(self, model, device):
        """The module a training step runs: DDP around ``model`` on several ranks."""
        return model

    def thread_policy(self, fixed: int | None, set_threads) -> ThreadPolicy:
        return ThreadPolicy(fixed, set_threads)

    def check_resume(self, state: dict, run_dir) -> None:
        trained = state.get("world_size", 1)  # checkpoints from before distributed training: one process
        if not isinstance(trained, int) or isinstance(trained, bool) or trained < 1:
            raise WeightsError(f"{run_dir}: its training state has no valid world_size; the file is corrupt, "
                               "resume from another run or start afresh")
        if trained != self.world:
            was = f"{trained} ranks" if trained > 1 else "one process"
            now = f"{self.world} ranks" if self.world > 1 else "one process"
            how = (f"torchrun with {trained} ranks in all (nnodes x nproc-per-node)" if trained > 1
                   else "svertka train without torchrun")
            raise UsageError(f"--resume {run_dir}: the run was trained on {was} and this job has {now}; "
                             f"resume it with {how}")

    def sync_buffers(self) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics) at the end of an
        epoch, so that evaluation and the checkpoint see one model."""

    def check_in_sync(self, state: dict) -> None:
        """Raise if the ranks' weights differ in any bit (checked at each checkpoint)."""

    def describe(self) -> str:
        return ""


class Ranks(Single):
    """One rank of a torch.distributed job that torchrun started."""

    def __init__(self, device: str, timeout_s: float):
        import torch
        import torch.distributed as dist

        self.torch, self.dist = torch, dist
        env = os.environ
        self.rank, self.world = int(env["RANK"]), int(env["WORLD_SIZE"])
        self.local_rank = int(env.get("LOCAL_RANK", "0"))
        self.local_world = int(env.get("LOCAL_WORLD_SIZE", "1"))
        cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        self.backend = "nccl" if cuda else "gloo"
        self.comm_device = torch.device(f"cuda:{self.local_rank}" if cuda else "cpu")
        if cuda:
            torch.cuda.set_device(self.local_rank)
        dist.init_process_group(self.backend, timeout=timedelta(seconds=timeout_s))
        self.control = dist.new_group(backend="gloo")  # for wait_for_others, on CPU whatever the backend

    def wait_for_others(self, timeout_s: float = STOP_WAIT_S) -> None:
        """Before a rank that failed exits: wait (a bounded time) for the ranks that fail at the
        same point (a bad flag, a mismatched resume), so that each says so; torchrun ends every
        rank the moment one exits."""
        try:
            self.dist.monitored_barrier(group=self.control, timeout=timedelta(seconds=timeout_s),
                                        wait_all_ranks=True)
        except RuntimeError:  # the others are elsewhere (this rank alone failed): they stop when it exits
            pass

    def close(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()

    def shard(self, idx):
        from ..data.streaming import rank_batches  # the one rule for a rank's part, streamed or not

        return rank_batches([idx], self.rank, self.world)[0]

    def rows(self, n: int) -> tuple[int, int]:
        return n * self.rank // self.world, n * (self.rank + 1) // self.world

    def all_reduce(self, values):
        t = self.torch.tensor([float(v) for v in values], dtype=self.torch.float64, device=self.comm_device)
        self.dist.all_reduce(t)
        return t.cpu().tolist()

    def gather_blocks(self, blocks: list) -> list:
        parts = [None] * self.world
        self.dist.all_gather_object(parts, blocks)
        return [b for part in parts for b in part]

    def broadcast(self, obj):
        box = [obj]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        self.dist.barrier()

    def aug_rng(self, rng, seed: int, epoch: int):
        return np.random.default_rng([seed, epoch, 1 + self.rank])

    def seed_epoch(self, seed: int, epoch: int) -> None:
        self.torch.manual_seed(int(np.random.SeedSequence([seed, epoch, 1 + self.rank]).generate_state(1)[0]))

    def device(self, dev: str) -> str:
        return f"cuda:{self.local_rank}" if dev == "cuda" else dev

    def wrap(self, model, device):
        from torch.nn.parallel import DistributedDataParallel

        ids = None
        if device.type == "cuda":
            ids = [device.index if device.index is not None else self.local_rank]
        self.module = DistributedDataParallel(model, device_ids=ids)
        return self.module

    def thread_policy(self, fixed: int | None, set_threads) -> ThreadPolicy:
        if fixed is not None:
            return ThreadPolicy(fixed, set_threads)
        cores = available_cores()
        share = max(1, cores // self.local_world)
        return ShareOfCores(share, set_threads, f"threads: {share} per rank ({cores} cores shared by the "
                            f"{self.local_world} ranks on this machine; --threads N fixes it)")

    def sync_buffers(self) -> None:
        # without --sync-bn each rank's last step updated its running statistics from its own images
        # (DDP hands rank 0's to every rank only at the start of the next forward)
        if self.module is not None:
            for buf in self.module.module.buffers():
                self.dist.broadcast(buf, src=0)

    def check_in_sync(self, state: dict) -> None:
        digests = [None] * self.world
        self.dist.all_gather_object(digests, weights_digest(state))
        if len(set(digests)) > 1:
            odd = [r for r, d in enumerate(digests) if d != digests[0]]
            raise RanksDivergedError(f"the weights of rank(s) {', '.join(map(str, odd))} differ from "
                                     "rank 0's (a nondeterministic op or a corrupted rank); the last "
                                     "checkpoint predates this, resume from it")

    def describe(self) -> str:
        return f", {self.world} ranks ({self.backend})"


class ShareOfCores(ThreadPolicy):
    """A rank's fixed share of the cores, said in the run's notes."""

    def __init__(self, share: int, set_threads, note: str):
        super().__init__(share, set_threads)
        self.share_note = note

    def start(self) -> int:
        n = super().start()
        self.note = self.share_note
        return n


_current: Single = Single()


def current() -> Single:
    """The job this process trains in (a ``Single`` outside a ``session``)."""
    return _current


def check_launch(cfg, env=None) -> int:
    """The world size, after the checks that need no process group (so every rank says them)."""
    world = world_from_env(env)
    if world > 1 and cfg.backend != "torch":
        raise UsageError(f"--backend {cfg.backend} trains in one process (the NumPy engine has no "
                         f"multi-process training), and torchrun started {world} ranks; run it without "
                         "torchrun, or use --backend torch")
    if world > 1 and cfg.batch_size % world:
        raise UsageError(f"--batch-size {cfg.batch_size} is the global batch, split over {world} ranks; "
                         f"pass a multiple of {world}")
    return world


@contextmanager
def session(cfg, timeout_s: float = DEFAULT_TIMEOUT_S):
    """The job around one training run: under torchrun, join the process group, end a
    failed rank with one line, and leave the group at the end.

    A rank that fails (its own error, or a lost peer) prints its line at once and exits 2:
    torchrun then ends the other ranks with SIGTERM, which may come at any moment, so
    nothing is left to print later. A rank ended by that SIGTERM says so in one line."""
    global _current
    if not launched_by_torchrun() or world_from_env() == 1:
        yield _current
        return
    ranks = Ranks(cfg.device, timeout_s)  # all ranks meet here, so each one reaches the checks below
    _current = ranks
    said = []

    def say(text: str) -> None:
        if not said:
            said.append(text)
            sys.stderr.flush()
            os.write(2, (text + "\n").encode())  # one write: the ranks share the pipe, lines must not mix

    def on_term(signum, frame):  # torchrun ends the other ranks with SIGTERM when one fails
        say(f"svertka train: rank {ranks.rank} of {ranks.world} stopped: torchrun is ending the job "
            f"(another rank failed or it was interrupted); {resume_hint(cfg, ranks.world)}")
        sys.stdout.flush()
        os._exit(128 + signum)

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        check_launch(cfg)
        yield ranks
    except SvertkaError as e:
        say(f"svertka: error: {e}")
        ranks.wait_for_others()
        raise SystemExit(2) from None
    except (RuntimeError, ConnectionError) as e:
        if not is_collective_failure(e):
            raise
        say(f"svertka: error: rank {ranks.rank} of {ranks.world} lost contact with the other ranks "
            f"({short_reason(e)}); {resume_hint(cfg, ranks.world)}")
        raise SystemExit(2) from None
    finally:
        _current = Single()
        if not said:  # a clean end: leave the group, give SIGTERM back
            signal.signal(signal.SIGTERM, old)
            try:
                ranks.close()
            except Exception:  # noqa: BLE001 - leaving is best effort; the run's files are written
                pass


def launch_torchrun(args) -> None:
    """`svertka train --nproc N ...`: the same command under torchrun on this
    machine (a free port, N ranks); its exit status becomes ours."""
    import importlib.util
    import shlex
    import subprocess

    if launched_by_torchrun():
        raise UsageError("--nproc starts torchrun, and this process already runs under it; drop --nproc")
    if args.backend == "numpy":
        raise UsageError("--nproc trains on several torch processes; the NumPy engine trains in one process: "
                         "drop --nproc or --backend numpy")
    if importlib.util.find_spec("torch") is None:
        raise UsageError("--nproc needs PyTorch (torchrun); pip install torch, or drop --nproc")
    cmd = torchrun_command(args.argv, args.nproc)
    print(f"svertka train: starting {shlex.join(['torchrun', *cmd[3:]])}", file=sys.stderr, flush=True)
    rc = subprocess.call(cmd)
    if rc:
        raise SystemExit(rc)


def torchrun_command(argv: list[str], nproc: int) -> list[str]:
    """The torchrun command that runs ``svertka ARGV`` on ``nproc`` local ranks, --nproc dropped."""
    rest, skip = [], False
    for tok in argv:
        if skip:
            skip = False
        elif tok == "--nproc":
            skip = True
        elif not tok.startswith("--nproc="):
            rest.append(tok)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "svertka", *rest]


def is_collective_failure(e: BaseException) -> bool:
    import torch.distributed as dist

    if isinstance(e, dist.DistError):
        return True
    text = str(e)
    return any(k in text for k in ("gloo", "NCCL", "nccl", "Connection closed", "Connection reset",
                                   "Timed out", "timed out", "Broken pipe"))


def short_reason(e: BaseException) -> str:
    """The gist of a collective's error: its first sentence, without gloo's source location."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    text = re.sub(r"^\[[^\]]*\]\s*", "", text).split(". ")[0]
    return text[:120]


def resume_hint(cfg, world: int) -> str:
    if not cfg.output or not (Path(cfg.output) / "last.safetensors").is_file():
        return "no epoch had finished: start the run again"
    return (f"the last whole checkpoint is in {cfg.output}; continue with `torchrun ... -m svertka train "
            f"--resume {cfg.output}` on {world} ranks in all")


# ------------------------------------------------------------------ sync BatchNorm


def sync_batchnorm(model):
    """``model`` with every BatchNorm2d computing its batch statistics over all
    ranks (``--sync-bn``). torch's SyncBatchNorm runs on GPUs only; this one
    reduces the per-channel sums with an all_reduce that carries gradients, so it
    runs on gloo (CPU) and nccl alike. Same parameter and buffer names: checkpoints load
    into a plain BatchNorm2d."""
    import torch.nn as nn

    def convert(module):
        for name, child in module.named_children():
            if type(child) is nn.BatchNorm2d:
                like = next(child.parameters(), None)  # the layer's device and dtype
                like = next(child.buffers()) if like is None else like
                new = sync_bn_class()(child.num_features, child.eps, child.momentum, child.affine,
                                      child.track_running_stats).to(like.device, like.dtype)
                new.load_state_dict(child.state_dict())
                new.train(child.training)
                setattr(module, name, new)
            else:
                convert(child)
        return module

    return convert(model)


@functools.cache
def sync_bn_class():
    import torch
    import torch.distributed as dist
    import torch.nn as nn

    class SumOverRanks(torch.autograd.Function):
        """all_reduce(SUM) with its gradient: the gradient of a sum over ranks, summed over ranks."""

        @staticmethod
        def forward(ctx, t):
            t = t.clone()
            dist.all_reduce(t)
            return t

        @staticmethod
        def backward(ctx, grad):
            grad = grad.clone()
            dist.all_reduce(grad)
            return grad

    all_reduce = SumOverRanks.apply

    class SyncBatchNorm2d(nn.BatchNorm2d):
        """BatchNorm2d whose training statistics span every rank's batch."""

        def forward(self, x):
            if not (self.training and dist.is_initialized()):  # one process: BatchNorm2d itself
                return super().forward(x)
            c = x.shape[1]
            xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # statistics in fp32+
            # two passes (mean, then centred squares) as torch's BatchNorm: no E[x^2] - E[x]^2 cancellation
            sums = all_reduce(torch.cat([xf.sum((0, 2, 3)), xf.new_tensor([xf.numel() // c])]))
            n = sums[c]
            mean = sums[:c] / n
            xc = xf - mean.view(1, c, 1, 1)
            var = all_reduce((xc * xc).sum((0, 2, 3))) / n
            y = xc * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
            if self.affine:
                y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
            if self.track_running_stats:
                with torch.no_grad():
                    self.num_batches_tracked.add_(1)
                    m = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                    self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                    self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
            return y.to(x.dtype)

    return SyncBatchNorm2d


def weights_digest(state: dict) -> str:
    """sha256 over a state_dict's names and bytes: equal digests, bit-identical weights."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(np.ascontiguousarray(state[k]).tobytes())
    return h.hexdigest()
