"""The thread policy (svertka.threads) on synthetic /proc/stat samples, the
load parsing under it (svertka.sysload), and --threads on every command."""
from __future__ import annotations

import json
import os

import pytest

from svertka.errors import UsageError
from svertka.sysload import LoadSample, OtherLoad, busy_jiffies, other_cores_between, own_jiffies, sample
from svertka.threads import ThreadPolicy, check_threads, pick_threads, threads_from_samples

CLK = 100  # jiffies per second, as on Linux


def proc_stat(per_cpu: list[tuple[int, int]]) -> str:
    """/proc/stat text for CPUs given as (busy, idle) jiffies; busy is spread over
    user, system and steal, idle over idle and iowait, as a kernel would."""
    def fields(busy, idle):
        u, s = busy // 2, busy // 4
        st = busy - u - s
        return f"{u} 0 {s} {idle - idle // 10} {idle // 10} 0 0 {st} 0 0"
    lines = [f"cpu  {fields(sum(b for b, _ in per_cpu), sum(i for _, i in per_cpu))}"]
    lines += [f"cpu{k} {fields(b, i)}" for k, (b, i) in enumerate(per_cpu)]
    return "\n".join(lines + ["intr 12345 0 0", "ctxt 999", "procs_running 3"]) + "\n"


def self_stat(utime: int, stime: int, name: str = "python") -> str:
    return (f"4242 ({name}) R 1 4242 4242 0 -1 4194304 100 0 0 0 {utime} {stime} 0 0 20 0 3 0 "
            f"100 1000000 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0")


def snap(t, per_cpu, own, cpus=None):
    return LoadSample(t, busy_jiffies(proc_stat(per_cpu), cpus), own)


# ------------------------------------------------------------------ parsing


def test_busy_jiffies_sums_all_but_idle_and_iowait():
    text = proc_stat([(300, 700), (50, 950)])
    assert busy_jiffies(text) == 350
    assert busy_jiffies(text, {0}) == 300 and busy_jiffies(text, {1}) == 50
    assert busy_jiffies(text, {0, 1}) == 350


def test_own_jiffies_survives_odd_process_names():
    assert own_jiffies(self_stat(120, 30)) == 150
    assert own_jiffies(self_stat(7, 3, name="a) (b) c")) == 10


def test_other_cores_between_subtracts_own_time():
    # 2 s apart: the machine's CPUs did 400 busy jiffies, 150 of them ours -> others used 1.25 cores
    a = snap(10.0, [(0, 0), (0, 0)], own=50)
    b = snap(12.0, [(300, 0), (100, 0)], own=200)
    assert other_cores_between(a, b, CLK) == pytest.approx(1.25)
    assert other_cores_between(b, a, CLK) is None  # out of order
    assert other_cores_between(None, b, CLK) is None


def test_real_samples_read_this_machine():
    a, load = sample(), OtherLoad()
    assert a is not None and a.busy >= 0 and a.own >= 0
    sum(i * i for i in range(200_000))  # our own work must not count as others'
    other = load.other_cores()
    assert other is not None and 0 <= other <= len(os.sched_getaffinity(0)) + 0.5


# ------------------------------------------------------------------ policy


@pytest.mark.parametrize("other, cores, want", [
    (0.0, 2, 2), (0.15, 2, 2), (0.2, 2, 2),   # noise and a light shell: keep every core
    (0.3, 2, 1), (1.0, 2, 1), (1.9, 2, 1),    # one core taken (or both): one thread, never zero
    (1.0, 8, 7), (2.5, 8, 5), (0.9, 1, 1),
    (None, 4, 4),                             # no /proc: as before, every core
])
def test_pick_threads(other, cores, want):
    assert pick_threads(other, cores) == want


def test_threads_from_synthetic_proc_stat_samples():
    # idle machine: only our own 2 threads busy for 1 s
    a = snap(0.0, [(1000, 5000), (1000, 5000)], own=400)
    b = snap(1.0, [(1100, 5000), (1100, 5000)], own=600)
    assert threads_from_samples(a, b, 2, CLK) == 2
    # another process spins on cpu0 for the whole second while we run one thread on cpu1
    b = snap(1.0, [(1100, 5000), (1100, 5000)], own=500)
    assert threads_from_samples(a, b, 2, CLK) == 1
    # the same spinner, seen only through the CPUs we may use: with affinity {1} it is not ours to avoid
    a1 = snap(0.0, [(1000, 5000), (1000, 5000)], own=400, cpus={1})
    b1 = snap(1.0, [(1100, 5000), (1100, 5000)], own=500, cpus={1})
    assert threads_from_samples(a1, b1, 1, CLK) == 1 and other_cores_between(a1, b1, CLK) == 0


class Recorder:
    """Stands in for torch.set_num_threads so the test sees every call."""
    def __init__(self):
        self.calls = []

    def __call__(self, n):
        self.calls.append(n)


def test_policy_rechecks_each_epoch_and_says_why():
    setter = Recorder()
    p = ThreadPolicy(None, setter, cores=2)
    n = p.start()  # measures this machine for a moment
    assert 1 <= n <= 2 and setter.calls == [n] and "of 2 cores" in p.note
    assert p.recheck(1.0) == (n == 2) and p.n == 1 and "1.0 cores busy over the last epoch" in p.note
    assert p.recheck(0.05) is True and p.n == 2 and setter.calls[-1] == 2
    calls = len(setter.calls)
    assert p.recheck(0.0) is False and len(setter.calls) == calls  # unchanged: torch is not called again


def test_fixed_threads_never_move():
    setter = Recorder()
    p = ThreadPolicy(1, setter, cores=2)
    assert p.start() == 1 and setter.calls == [1] and p.note == ""
    assert p.recheck(0.0) is False and p.recheck(2.0) is False and setter.calls == [1]


def test_check_threads():
    check_threads(1, cores=2)
    check_threads(2, cores=2)
    for bad in (0, 3, 10 ** 10, -1, 1.5, True, "2"):
        with pytest.raises(UsageError, match="--threads"):
            check_threads(bad, cores=2)


# ------------------------------------------------------------------ commands

torch = pytest.importorskip("torch")

from cli_helpers import one_line_error  # noqa: E402
from svertka.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def run2(tmp_path_factory):
    """A 2-epoch torch run with fixed threads, stopped after epoch 1 (resumable)."""
    from svertka.train import make_config, train

    d = tmp_path_factory.mktemp("threads") / "run"
    cfg = make_config({"data": "fashion-mnist-mini", "limit_train": 256, "limit_test": 64, "batch_size": 64,
                       "epochs": 2, "threads": 1, "output": str(d)})
    train(cfg, stop_after=1, progress=False)
    return d


def test_too_many_threads_is_one_line(capsys, run2):
    for argv in (["train", "--data", "fashion-mnist-mini", "--threads", "10000000000"],
                 ["eval", str(run2), "--threads", "10000000000"],
                 ["predict", "-w", str(run2), "x.png", "--threads", "10000000000"],
                 ["train", "--resume", str(run2), "--threads", "10000000000"],
                 ["demo", "--threads", "10000000000"]):
        assert "--threads" in one_line_error(capsys, argv)


def test_resume_may_change_threads_and_records_them(run2, capsys):
    cores = len(os.sched_getaffinity(0))
    assert main(["train", "--resume", str(run2), "--threads", str(cores), "-q"]) == 0
    capsys.readouterr()
    assert json.loads((run2 / "config.json").read_text())["threads"] == cores
    history = [json.loads(line) for line in (run2 / "metrics.jsonl").read_text().splitlines()]
    assert [h["threads"] for h in history] == [1, cores]
    # other flags still may not change on resume
    assert "--lr" in one_line_error(capsys, ["train", "--resume", str(run2), "--lr", "0.1"])


def test_resume_on_a_smaller_machine_takes_a_new_thread_count(tmp_path, capsys):
    """A run saved with more threads than this machine has: resume says so, and --threads mends it."""
    from svertka.train import make_config, train

    d = tmp_path / "big"
    train(make_config({"data": "fashion-mnist-mini", "limit_train": 128, "limit_test": 64, "batch_size": 64,
                       "epochs": 2, "threads": 1, "output": str(d)}), stop_after=1, progress=False)
    saved = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**saved, "threads": 4096}))  # as if from a 4096-core machine
    assert "--threads" in one_line_error(capsys, ["train", "--resume", str(d), "-q"])
    assert main(["train", "--resume", str(d), "--threads", "1", "-q"]) == 0
    assert json.loads((d / "config.json").read_text())["threads"] == 1


def test_eval_and_predict_take_threads(run2, tmp_path, capsys):
    from PIL import Image

    assert main(["eval", str(run2), "--json", "--limit", "64", "--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 64
    Image.new("L", (28, 28), 0).save(tmp_path / "a.png")
    assert main(["predict", "-w", str(run2), str(tmp_path / "a.png"), "--json", "--threads", "1"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert torch.get_num_threads() == 1


def test_default_threads_follow_the_load(tmp_path):
    """No --threads: the run starts with a count the policy allows and records it per epoch."""
    from svertka.train import make_config, train

    cfg = make_config({"data": "fashion-mnist-mini", "limit_train": 128, "limit_test": 64, "batch_size": 64,
                       "epochs": 2, "output": str(tmp_path / "r")})
    r = train(cfg, progress=False)
    cores = len(os.sched_getaffinity(0))
    for h in r.history:
        assert 1 <= h["threads"] <= cores and h["other_cores"] is not None
    # each epoch after the first used what the policy makes of the epoch before's load
    for prev, h in zip(r.history, r.history[1:]):
        assert h["threads"] == pick_threads(prev["other_cores"], cores)


def test_demo_parser_takes_threads():
    from svertka.cli import build_parser

    assert build_parser().parse_args(["demo", "--threads", "1"]).threads == 1
