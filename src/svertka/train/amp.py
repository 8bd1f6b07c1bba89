"""``--amp auto``: bf16 autocast only where it pays.

bf16 is fast on CPUs with native bf16 instructions (AVX512-BF16, AMX) and on
GPUs that support it. Elsewhere torch emulates it, and it is slower than fp32:
41 against 187 GFLOP/s for a 2048^2 GEMM on a Xeon without it, and 20 to 40
times slower on the 2-core AMD EPYC here. So ``auto`` takes bf16 where the CPU
flags say native, and otherwise lets a short probe (a GEMM and a conv in
both dtypes, well under a second) decide.

Two environment variables emulate other machines (tests, benchmarks/contention.py):
``SVERTKA_NATIVE_BF16=0|1`` overrides the CPU flags, and ``SVERTKA_BF16_PROBE=X``
replaces the probe's answer with X = bf16's speed as a multiple of fp32's.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import NamedTuple

from ..errors import UsageError

NATIVE_FLAGS = ("amx_bf16", "avx512_bf16")
MIN_SPEEDUP = 1.2  # bf16 must beat fp32 by this much: autocast adds casts the probe does not see


class AmpChoice(NamedTuple):
    amp: str  # "bf16" or "none"
    why: str  # one line for the user ("" when --amp named the dtype)


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of /proc/cpuinfo text (x86 'flags', ARM 'Features')."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def native_bf16_flag(flags: set[str]) -> str | None:
    return next((f for f in NATIVE_FLAGS if f in flags), None)


def _read_native_flag() -> str | None:
    forced = os.environ.get("SVERTKA_NATIVE_BF16")
    if forced is not None:
        return "SVERTKA_NATIVE_BF16=1" if forced.strip() == "1" else None
    try:
        with open("/proc/cpuinfo") as f:
            return native_bf16_flag(cpu_flags(f.read()))
    except OSError:
        return None


def probe_bf16_speed(torch) -> float:
    """bf16's speed as a multiple of fp32's on a 256^2 GEMM and a 32->32 channel
    3x3 conv (batch 8, 14x14, channels-last), best of two after a warm-up.
    Stops after one timed bf16 round when that is already 3x slower (emulated
    bf16 can be 40x slower), so it stays well under a second."""
    forced = os.environ.get("SVERTKA_BF16_PROBE")
    if forced is not None:
        try:
            return float(forced)
        except ValueError:
            raise UsageError(f"SVERTKA_BF16_PROBE={forced!r}: give bf16's speed as a multiple of fp32's, "
                             f"e.g. 0.2, or unset it") from None
    g = torch.Generator().manual_seed(0)  # its own generator: the run's RNG stream is untouched

    def work(dtype):
        a = torch.randn(256, 256, generator=g).to(dtype)
        x = torch.randn(8, 32, 14, 14, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(32, 32, 3, 3, generator=g).to(dtype)

        def run():
            t = time.perf_counter()
            a @ a
            torch.nn.functional.conv2d(x, w, padding=1)
            return time.perf_counter() - t
        return run

    with torch.inference_mode():
        fp32, bf16 = work(torch.float32), work(torch.bfloat16)
        fp32()
        t32 = min(fp32() for _ in range(2))
        bf16()  # warm-up: the first call may build kernels
        t16 = bf16()
        if t16 < 3 * t32:  # else clearly slower: skip the rest
            t16 = min(bf16() for _ in range(2))
    return t32 / max(t16, 1e-9)


def choose_amp(requested: str, device_type: str, native_flag: str | None,
               probe: Callable[[], float], gpu_bf16: bool = False) -> AmpChoice:
    """The decision, pure given its inputs: ``probe()`` runs only when needed."""
    if requested != "auto":
        return AmpChoice(requested, "")  # the user's choice: nothing to explain
    if device_type == "cuda":
        return AmpChoice("bf16", "amp auto: bf16 (the GPU supports it)") if gpu_bf16 else \
            AmpChoice("none", "amp auto: fp32 (the GPU has no bf16)")
    if device_type != "cpu":
        return AmpChoice("none", f"amp auto: fp32 (no bf16 check for {device_type})")
    if native_flag:
        return AmpChoice("bf16", f"amp auto: bf16 (the CPU has native bf16: {native_flag})")
    speed = probe()
    verdict = f"no native bf16 in the CPU flags; a probe ran bf16 at {speed:.2f}x fp32's speed"
    if speed >= MIN_SPEEDUP:
        return AmpChoice("bf16", f"amp auto: bf16 ({verdict})")
    return AmpChoice("none", f"amp auto: fp32 ({verdict})")


def resolve_amp(cfg, torch, device) -> AmpChoice:
    """The run's amp: ``cfg.amp``, with ``auto`` decided once and kept in
    ``cfg.amp_choice`` (saved in config.json) so that --resume continues the same way."""
    if cfg.amp == "auto" and cfg.amp_choice:
        name = "bf16" if cfg.amp_choice == "bf16" else "fp32"
        return AmpChoice(cfg.amp_choice, f"amp auto: {name} (as chosen when the run started)")
    gpu_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    choice = choose_amp(cfg.amp, device.type, _read_native_flag(), lambda: probe_bf16_speed(torch), gpu_bf16)
    if cfg.amp == "auto":
        cfg.amp_choice = choice.amp
    return choice
