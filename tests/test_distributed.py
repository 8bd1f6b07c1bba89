"""Distributed training under torchrun (issue 15, section 1 and "What it must show" 1, 3, 4).

The jobs run real torchrun processes on this machine (gloo, one thread per rank) on
fashion-mnist-mini: LeNet-5, global batch 128, 2 epochs of 25 steps = 50 steps, SGD with
momentum, no augmentation. One 2-rank job (the ``two_ranks`` fixture) is shared: the
equivalence test reads each rank's weights, and the slow tests compare their runs to its
checkpoint.
"""
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("this torch has no gloo process groups", allow_module_level=True)

from safetensors.numpy import load_file  # noqa: E402

import svertka  # noqa: E402
from cli_helpers import one_line_error  # noqa: E402
from svertka.train import distributed, make_config, train  # noqa: E402
from svertka.train.checkpoint import read_checkpoint  # noqa: E402
from svertka.train.distributed import Ranks, Single  # noqa: E402

SRC = Path(svertka.__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("dist_worker.py")
# 3200 images / batch 128 = 25 steps per epoch; 2 epochs = the 50 steps
CONFIG = {"model": "lenet5", "data": "fashion-mnist-mini", "limit_train": 3200, "limit_test": 256,
          "epochs": 2, "batch_size": 128, "threads": 1, "seed": 0, "opt": "sgd", "lr": 0.05}
FLAGS = ["lenet5", "--data", "fashion-mnist-mini", "--limit-train", "3200", "--limit-test", "256",
         "--epochs", "2", "-b", "128", "--threads", "1", "--seed", "0", "--opt", "sgd", "--lr", "0.05", "-q"]
JOB_TIMEOUT_S = 600  # one job is about a minute on the loaded 2-core machine; this only stops a hang


def job_env() -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def torchrun(*args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def run_job(cmd, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, env=job_env(), capture_output=True, text=True, timeout=JOB_TIMEOUT_S, **kw)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uninterrupted(two_ranks):
    """The checkpoint the shared 2-rank job ended with."""
    return read_checkpoint(two_ranks / "run" / "last.safetensors")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One `torchrun --nproc-per-node 2` job of CONFIG: each rank's weights and the run folder."""
    out = tmp_path_factory.mktemp("two_ranks")
    cfg = {**CONFIG, "output": str(out / "run")}
    run_job(torchrun("--standalone", "--nproc-per-node", "2", str(WORKER), json.dumps(cfg), str(out)))
    return out


# ------------------------------------------------------------ "What it must show" 1


def test_two_ranks_match_one_process_after_50_steps(two_ranks, tmp_path, capsys):
    """Equivalence. The ranks hold bit-identical weights (DDP gives them the same averaged
    gradient and they run the same optimizer). Against one process at batch 128, same seed:

    Tolerance: |w_2ranks - w_1process| <= 1e-6 for every weight. Both runs do the same
    arithmetic on the same images except the order of the batch sum: DDP sums 64 images on
    each rank and averages the two, one process sums 128. That changes each gradient by
    float32 round-off, a few units of 2^-24 (6e-8) relative. SGD is linear in the gradient:
    over 50 steps at lr <= 0.05 with momentum 0.9 (an effective step of at most 0.5 x grad),
    with gradients of order 0.1, that adds up to 50 x 0.5 x 0.1 x ~3e-7 = ~7e-7. Measured:
    at most 1.2e-7. A real fault (a rank's shard wrong, a gradient summed instead of averaged,
    an LR scaled by the rank count) changes the weights by ~1e-2: the test asserts that the
    weights moved at least 1,000x the tolerance, so the comparison is not vacuous."""
    r0, r1 = load_file(str(two_ranks / "rank0.safetensors")), load_file(str(two_ranks / "rank1.safetensors"))
    assert same_tensors(r0, r1)  # bit-identical across ranks

    saved = read_checkpoint(two_ranks / "run" / "last.safetensors")
    assert saved[3]["step"] == 50 and saved[3]["world_size"] == 2
    assert same_tensors(saved[0], r0)  # rank 0 wrote its own weights

    torch.manual_seed(0)  # the reference: one process, the same config and seed
    ref_run = train(make_config({**CONFIG, "output": str(tmp_path / "ref")}), progress=False)
    ref = read_checkpoint(ref_run.run_dir / "last.safetensors")[0]
    tol = 1e-6
    assert r0.keys() == ref.keys()
    for k in ref:
        np.testing.assert_allclose(r0[k], ref[k], rtol=0, atol=tol, err_msg=k)
    # every weight tensor travelled far beyond the tolerance from its seeded start
    from svertka.backends import get_backend
    from svertka.zoo import resolve_model
    torch.manual_seed(0)
    start = get_backend("torch").compile(resolve_model("lenet5", num_classes=10, in_chans=1, input_size=28))
    for k, v in start.state_dict().items():
        assert np.abs(ref[k] - v.numpy()).max() > 1000 * tol, k
    # the recorded metrics are the reduced ones: the same loss as the one process, to round-off
    dist_hist, ref_hist = saved[3]["history"], ref_run.history
    for a, b in zip(dist_hist, ref_hist):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=2 / 256)  # argmax ties may flip one image

    # (here, so that `make test`'s workers start the 2-rank job once) resuming it in one process: one line
    err = one_line_error(capsys, ["train", "--resume", str(two_ranks / "run")])
    assert "trained on 2 ranks and this job has one process" in err and "torchrun with 2 ranks" in err


# ------------------------------------------------------------ errors, in process


def test_resume_with_another_rank_count_is_one_line():
    three = object.__new__(Ranks)  # the check needs no process group
    three.world = 3
    with pytest.raises(distributed.UsageError, match="trained on 2 ranks and this job has 3 ranks"):
        three.check_resume({"world_size": 2}, "runs/x")
    with pytest.raises(distributed.UsageError, match="trained on one process and this job has 3 ranks"):
        three.check_resume({}, "runs/x")  # checkpoints from before distributed training: one process
    Single().check_resume({}, "runs/x")


def test_launch_checks_name_the_problem():
    """What every rank checks right after the ranks meet (tested under torchrun by the slow test below)."""
    env = {"RANK": "1", "WORLD_SIZE": "2"}
    with pytest.raises(distributed.UsageError, match="NumPy engine has no multi-process training.*torchrun "
                       "started 2 ranks"):
        distributed.check_launch(make_config({"backend": "numpy"}), env)
    with pytest.raises(distributed.UsageError, match="split over 3 ranks; pass a multiple of 3"):
        distributed.check_launch(make_config({"batch_size": 128}), {"RANK": "0", "WORLD_SIZE": "3"})
    assert distributed.check_launch(make_config({"batch_size": 128}), {"RANK": "0", "WORLD_SIZE": "4"}) == 4
    assert distributed.check_launch(make_config({"backend": "numpy"}), {}) == 1


@pytest.mark.slow
def test_numpy_backend_under_torchrun_is_one_line_on_every_rank():
    r = subprocess.run(torchrun("--standalone", "--nproc-per-node", "2", "-m", "svertka", "train", *FLAGS,
                                "--backend", "numpy"), env=job_env(), capture_output=True, text=True,
                       timeout=JOB_TIMEOUT_S)
    said = [ln for ln in r.stderr.splitlines() if ln.startswith("svertka: error:") and "NumPy engine" in ln]
    assert r.returncode != 0 and len(said) == 2, r.stderr[-3000:]


def test_nproc_errors_are_one_line(monkeypatch, capsys):
    err = one_line_error(capsys, ["train", "lenet5", "--nproc", "2", "--backend", "numpy"])
    assert "NumPy engine trains in one process" in err
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    err = one_line_error(capsys, ["train", "lenet5", "--nproc", "2"])
    assert "already runs under" in err


def test_nproc_runs_the_same_command_under_torchrun():
    cmd = distributed.torchrun_command(["train", "lenet5", "--nproc", "2", "-b", "64", "--nproc=2"], 2)
    assert cmd[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "svertka",
                       "train", "lenet5", "-b", "64"]


def test_sync_bn_on_the_numpy_backend_is_one_line(capsys):
    err = one_line_error(capsys, ["train", "lenet5", "--backend", "numpy", "--sync-bn"])
    assert "--sync-bn" in err


# ------------------------------------------------------------ the hooks, pure


def ranks(rank: int, world: int, local_world: int | None = None) -> Ranks:
    r = object.__new__(Ranks)  # the hooks below need no process group
    r.rank, r.world, r.local_world = rank, world, local_world or world
    return r


@pytest.mark.parametrize("world", [2, 3, 4])
def test_shards_of_a_step_partition_the_global_batch_in_order(world):
    batch = np.random.default_rng(0).permutation(1000)[: 12 * world]
    parts = [ranks(r, world).shard(batch) for r in range(world)]
    assert all(len(p) == 12 for p in parts)
    assert np.array_equal(np.concatenate(parts), batch)


@pytest.mark.parametrize("n,world", [(10, 3), (2000, 2), (1, 2), (7, 4)])
def test_evaluation_rows_partition_the_split(n, world):
    bounds = [ranks(r, world).rows(n) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))


def test_augmentation_is_seeded_per_rank_and_epoch():
    draws = {(r, e): ranks(r, 2).aug_rng(None, 0, e).random(4).tolist() for r in (0, 1) for e in (0, 1)}
    assert len({tuple(v) for v in draws.values()}) == 4  # each (rank, epoch) its own stream
    assert ranks(1, 2).aug_rng(None, 0, 1).random(4).tolist() == draws[(1, 1)]  # and reproducible
    one = np.random.default_rng([0, 0])
    assert Single().aug_rng(one, 0, 0) is one  # one process: the loop's generator, as before


def test_each_rank_takes_its_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(distributed, "available_cores", lambda: 8)
    set_to = []
    policy = ranks(0, 4, local_world=2).thread_policy(None, set_to.append)
    policy.start()
    assert policy.n == 4 and set_to == [4] and "4 per rank" in policy.note
    policy = ranks(0, 2, local_world=2).thread_policy(3, set_to.append)  # --threads N wins
    policy.start()
    assert policy.n == 3 and not policy.recheck(5.0)


def test_sync_bn_keeps_names_and_equals_batchnorm_in_one_process():
    """Outside a process group the converted layer is BatchNorm2d exactly; its
    state_dict names are BatchNorm2d's, so checkpoints load either way."""
    nn = torch.nn
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Sequential(nn.BatchNorm2d(4)))
    synced = distributed.sync_batchnorm(copy.deepcopy(plain))
    kinds = [type(m).__name__ for m in synced.modules()]
    assert kinds.count("SyncBatchNorm2d") == 2 and "BatchNorm2d" not in kinds
    assert synced.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(8, 1, 10, 10)
    assert torch.equal(synced(x), plain(x))
    assert all(torch.equal(a, b) for a, b in zip(synced.state_dict().values(), plain.state_dict().values()))


def test_lost_rank_reason_is_short():
    e = RuntimeError("[/__w/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
                     "[127.0.0.1]:52459: Connection reset by peer. This is typically caused by a remote "
                     "worker")
    assert distributed.short_reason(e) == "Read error [127.0.0.1]:52459: Connection reset by peer"
    assert distributed.is_collective_failure(e)
    assert not distributed.is_collective_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


# ------------------------------------------------------------ "What it must show" 3 and 4


def rank_pid(parent: int, rank: int, deadline: float) -> int:
    """The pid of torchrun's worker with RANK=rank, among ``parent``'s descendants."""
    while time.monotonic() < deadline:
        todo, seen = [parent], []
        while todo:
            pid = todo.pop()
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    kids = [int(c) for c in (task / "children").read_text().split()]
                except OSError:
                    continue
                todo += kids
                seen += kids
        for pid in seen:
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in env:
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no worker with RANK={rank} under pid {parent}")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the ranks' pids in /proc")
def test_sigkill_one_rank_mid_epoch_then_resume_is_bit_identical(two_ranks, tmp_path):
    run = tmp_path / "run"
    cmd = torchrun("--standalone", "--nproc-per-node", "2", "-m", "svertka", "train", *FLAGS, "-o", str(run),
                   "--dist-timeout", "30")
    log = (tmp_path / "job.err").open("w")
    job = subprocess.Popen(cmd, env=job_env(), stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while not (run / "last.safetensors").exists():  # epoch 1 saved: epoch 2 starts now
            assert job.poll() is None and time.monotonic() < deadline, "the job ended before epoch 1"
            time.sleep(0.02)
        victim = rank_pid(job.pid, 1, deadline)
        time.sleep(0.5)  # an epoch takes ~2.5 s here: land inside epoch 2
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        rc = job.wait(timeout=120)  # bounded: gloo sees the closed connection, torchrun ends the job
        stopped_after = time.monotonic() - killed
    finally:
        if job.poll() is None:
            job.kill()
        log.close()
    err = (tmp_path / "job.err").read_text()
    assert rc != 0 and stopped_after < 120
    line = next(ln for ln in err.splitlines() if "rank 0 of 2" in ln)  # the survivor's one line
    assert ("lost contact" in line or "stopped" in line) and f"--resume {run}" in line, line
    state = read_checkpoint(run / "last.safetensors")[3]
    assert state["epoch"] == 1, "the kill landed after epoch 2 ended; the machine is too slow for this test"

    # another rank count: refused, one line on every rank, and the run is left as it was
    four = torchrun("--standalone", "--nproc-per-node", "4", "-m", "svertka", "train", "--resume", str(run))
    bad = subprocess.run(four, env=job_env(), capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    said = [ln for ln in bad.stderr.splitlines() if "trained on 2 ranks and this job has 4 ranks" in ln]
    assert bad.returncode != 0 and len(said) == 4, bad.stderr[-3000:]
    assert read_checkpoint(run / "last.safetensors")[3]["epoch"] == 1

    run_job(torchrun("--standalone", "--nproc-per-node", "2", "-m", "svertka", "train", "--resume", str(run),
                     "-q"))
    got, want = read_checkpoint(run / "last.safetensors"), uninterrupted(two_ranks)
    assert same_tensors(got[0], want[0]) and same_tensors(got[2], want[2])  # weights and optimizer state
    timing = ("images_per_s", "seconds", "train_seconds", "elapsed", "other_cores")
    strip = [{k: v for k, v in h.items() if k not in timing} for h in got[3]["history"]]
    assert strip == [{k: v for k, v in h.items() if k not in timing} for h in want[3]["history"]]


@pytest.mark.slow
def test_two_torchrun_nodes_on_localhost_match_one_node(two_ranks, tmp_path):
    """Two torchrun invocations (one rank each) meet at --rdzv-endpoint and form one job."""
    port, run = free_port(), tmp_path / "run"
    node = torchrun("--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                    "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "svertka-test",
                    "-m", "svertka", "train", *FLAGS, "-o", str(run))
    jobs = [subprocess.Popen(node, env=job_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    try:
        outs = [j.communicate(timeout=JOB_TIMEOUT_S) for j in jobs]
    finally:
        for j in jobs:
            if j.poll() is None:
                j.kill()
    assert [j.returncode for j in jobs] == [0, 0], [o[1][-2000:] for o in outs]
    got, want = read_checkpoint(run / "last.safetensors"), uninterrupted(two_ranks)
    assert got[3]["world_size"] == 2
    assert same_tensors(got[0], want[0]) and same_tensors(got[2], want[2])


@pytest.mark.slow
def test_sync_bn_two_ranks_match_one_process(tmp_path):
    """--sync-bn on 2 ranks trains a BN net (vgg_fm_small, 2 steps) as one process does;
    without it each rank normalises by its own 64 images. Measured here: 1.4e-6 apart with
    --sync-bn (the float32 round-off of a different summation order, amplified by BatchNorm's
    backward, which subtracts means over 100,000 values: the first conv takes the most),
    6.3e-3 apart without. The tolerance, 2e-5, sits between them with room both ways; the
    formula itself is checked exactly, in float64, by the test after this one."""
    cfg = {**CONFIG, "model": "vgg_fm_small", "limit_train": 256, "epochs": 1}
    torch.manual_seed(0)
    ref = read_checkpoint(train(make_config({**cfg, "output": str(tmp_path / "ref")}),
                                progress=False).run_dir / "last.safetensors")[0]
    gaps = {}
    for sync in (True, False):
        out = tmp_path / str(sync)
        out.mkdir()
        run_job(torchrun("--standalone", "--nproc-per-node", "2", str(WORKER),
                         json.dumps({**cfg, "sync_bn": sync, "output": str(out / "run")}), str(out)))
        r0, r1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
        assert same_tensors(r0, r1)  # running statistics included: rank 0's are handed to all
        assert all(int(r0[k]) == 2 for k in r0 if k.endswith("num_batches_tracked"))
        gaps[sync] = max(np.abs(r0[k] - ref[k]).max() for k in ref if not k.endswith("num_batches_tracked"))
    assert gaps[True] <= 2e-5 < gaps[False], gaps


def test_sync_bn_formula_is_batchnorm_in_float64():
    """The layer's own forward and backward, run over a real (one-rank) gloo group in float64:
    outputs, gradients and running statistics equal BatchNorm2d's to float64 round-off. Over
    several ranks the only change is the all_reduce of the sums, whose backward is torch's."""
    dist = torch.distributed
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        bn = torch.nn.BatchNorm2d(4).double()
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-1, 1)
        synced = distributed.sync_batchnorm(torch.nn.Sequential(copy.deepcopy(bn)))[0]
        assert type(synced).__name__ == "SyncBatchNorm2d" and synced.weight.dtype == torch.float64
        x = torch.randn(16, 4, 7, 7, dtype=torch.float64) * 3 + 1
        w = torch.randn(16, 4, 7, 7, dtype=torch.float64)
        for _ in range(2):  # twice: the running statistics' update from a non-zero start
            xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
            ya, yb = bn(xa), synced(xb)
            (ya * w).sum().backward()
            (yb * w).sum().backward()
            for a, b in ((ya, yb), (xa.grad, xb.grad), (bn.weight.grad, synced.weight.grad),
                         (bn.bias.grad, synced.bias.grad), (bn.running_mean, synced.running_mean),
                         (bn.running_var, synced.running_var)):
                torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_streamed_data_on_two_ranks_trains_as_one_process(tmp_path):
    """--stream: each rank decodes only its part of each step from disk. With --sync-bn a BN
    net (vgg_fm_small on 32 px photos, batch 16, 7 steps) ends where one process does, to
    float32 round-off as amplified by BatchNorm (measured 8.7e-6; see the sync BN test)."""
    pytest.importorskip("skimage")  # the photos
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_photo_folder",
                                                  SRC.parent / "scripts" / "make_photo_folder.py")
    photos = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(photos)
    root = photos.make_photo_folder(tmp_path / "photos", 12, test_per_class=4, size=32, seed=7)
    flags = ["vgg_fm_small", "--data", "imagefolder", "--root", str(root), "--stream", "--image-size", "32",
             "--crop-pct", "1.0", "--train-crop", "center", "--workers", "0", "--epochs", "1", "-b", "16",
             "--threads", "1", "--seed", "1", "--opt", "sgd", "--lr", "0.05", "--sync-bn", "-q"]
    run_job([sys.executable, "-m", "svertka", "train", *flags, "-o", str(tmp_path / "one")])
    run_job(torchrun("--standalone", "--nproc-per-node", "2", "-m", "svertka", "train", *flags,
                     "-o", str(tmp_path / "two")))
    one, two = (read_checkpoint(tmp_path / r / "last.safetensors") for r in ("one", "two"))
    assert two[3]["world_size"] == 2 and one[3]["steps_per_epoch"] == two[3]["steps_per_epoch"] == 7
    for k in one[0]:
        np.testing.assert_allclose(two[0][k], one[0][k], rtol=0, atol=1e-4, err_msg=k)
    assert two[3]["history"][0]["train_loss"] == pytest.approx(one[3]["history"][0]["train_loss"], abs=1e-4)
