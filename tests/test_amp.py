"""--amp auto (train/amp.py): bf16 only where the CPU has native bf16 or the
probe finds it faster; the choice is said in one line and kept on --resume."""
from __future__ import annotations

import json
import math

import pytest

from svertka.train.amp import MIN_SPEEDUP, choose_amp, cpu_flags, native_bf16_flag

XEON_NO_BF16 = ("processor\t: 0\nvendor_id\t: GenuineIntel\n"
                "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni\n")
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
GRAVITON = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm sve\n"


def never():
    raise AssertionError("the probe ran although the answer was already known")


def test_cpu_flags_and_native_bf16():
    assert native_bf16_flag(cpu_flags(XEON_NO_BF16)) is None  # avx512 alone is not bf16
    assert native_bf16_flag(cpu_flags(SAPPHIRE)) == "amx_bf16"
    assert "bf16" in cpu_flags(GRAVITON)
    assert native_bf16_flag(cpu_flags(GRAVITON)) is None  # the probe decides
    assert cpu_flags("") == set()


def test_native_cpu_takes_bf16_without_probing():
    c = choose_amp("auto", "cpu", "avx512_bf16", never)
    assert c.amp == "bf16" and "avx512_bf16" in c.why and "\n" not in c.why


@pytest.mark.parametrize("speed, want", [(0.05, "none"), (0.9, "none"), (MIN_SPEEDUP - 0.01, "none"),
                                         (MIN_SPEEDUP, "bf16"), (3.0, "bf16")])
def test_no_native_bf16_follows_the_probe_both_ways(speed, want):
    c = choose_amp("auto", "cpu", None, lambda: speed)
    assert c.amp == want
    assert c.why.startswith(f"amp auto: {'bf16' if want == 'bf16' else 'fp32'} (")
    assert f"{speed:.2f}x" in c.why


def test_explicit_amp_and_gpus():
    assert choose_amp("bf16", "cpu", None, never) == ("bf16", "")
    assert choose_amp("none", "cpu", "amx_bf16", never) == ("none", "")
    assert choose_amp("auto", "cuda", None, never, gpu_bf16=True).amp == "bf16"
    assert choose_amp("auto", "cuda", None, never, gpu_bf16=False).amp == "none"
    assert choose_amp("auto", "mps", None, never).amp == "none"


# ------------------------------------------------------------ with torch

torch = pytest.importorskip("torch")

from svertka.train import make_config, resume_config, train  # noqa: E402
from svertka.train.amp import probe_bf16_speed  # noqa: E402


def test_probe_measures_both_dtypes_and_leaves_the_rng_alone(monkeypatch):
    monkeypatch.delenv("SVERTKA_BF16_PROBE", raising=False)
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    speed = probe_bf16_speed(torch)
    assert math.isfinite(speed) and speed > 0
    assert torch.equal(torch.rand(4), expected)


def test_a_bad_forced_probe_is_one_line(monkeypatch, capsys, tmp_path):
    from svertka.cli import main

    monkeypatch.setenv("SVERTKA_NATIVE_BF16", "0")
    monkeypatch.setenv("SVERTKA_BF16_PROBE", "fast")
    rc = main(["train", "--data", "fashion-mnist-mini", "--limit-train", "64", "--epochs", "1",
               "--threads", "1", "--amp", "auto", "-o", str(tmp_path / "r"), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "SVERTKA_BF16_PROBE" in err and "\n" not in err


def tiny(tmp_path, name, **kw):
    return make_config({"data": "fashion-mnist-mini", "limit_train": 128, "limit_test": 64, "batch_size": 64,
                        "epochs": 2, "threads": 1, "amp": "auto", "output": str(tmp_path / name), **kw})


@pytest.mark.parametrize("speed, want", [("0.25", "none"), ("2.0", "bf16")])
def test_auto_on_a_cpu_without_native_bf16(tmp_path, monkeypatch, capsys, speed, want):
    """Emulate a CPU without native bf16, force the probe's answer, and check
    the run's choice, its one line, and that --resume keeps it whatever the probe says then."""
    monkeypatch.setenv("SVERTKA_NATIVE_BF16", "0")
    monkeypatch.setenv("SVERTKA_BF16_PROBE", speed)
    r = train(tiny(tmp_path, "r"), stop_after=1, progress=True)
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("amp auto:"))
    assert line.startswith(f"amp auto: {'bf16' if want == 'bf16' else 'fp32'} (no native bf16")
    assert f"{float(speed):.2f}x" in line
    saved = json.loads((r.run_dir / "config.json").read_text())
    assert saved["amp"] == "auto" and saved["amp_choice"] == want
    # the probe now says otherwise
    monkeypatch.setenv("SVERTKA_BF16_PROBE", "2.0" if want == "none" else "0.25")
    r2 = train(resume_config(r.run_dir), resume=r.run_dir, progress=True)
    assert "as chosen when the run started" in capsys.readouterr().err
    assert json.loads((r2.run_dir / "config.json").read_text())["amp_choice"] == want


def test_native_flag_forced_on_takes_bf16(tmp_path, monkeypatch):
    monkeypatch.setenv("SVERTKA_NATIVE_BF16", "1")
    monkeypatch.setenv("SVERTKA_BF16_PROBE", "0.01")  # ignored: native wins
    r = train(tiny(tmp_path, "n", epochs=1), progress=False)
    assert json.loads((r.run_dir / "config.json").read_text())["amp_choice"] == "bf16"


def test_auto_on_the_numpy_engine_is_fp32(tmp_path):
    cfg = tiny(tmp_path, "np", backend="numpy", epochs=1)
    r = train(cfg, progress=False)
    assert r.history and json.loads((r.run_dir / "config.json").read_text())["amp_choice"] is None
