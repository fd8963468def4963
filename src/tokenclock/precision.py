"""Which precision a run computes in, and why: `auto` takes bf16 autocast only where the device
computes bf16 natively (CUDA with bf16; a CPU with AMX or AVX512-BF16 units that torch's kernels
use), fp32 elsewhere, where bf16 is emulated and many times slower. Also the machine facts behind
the choice (CPU model, cores, torch's kernel capability), for the manifest, the train summary and
every benchmark's header. torch is imported inside each function, so `import tokenclock` stays fast.
"""
from __future__ import annotations

import functools
import os
import platform
import time
from dataclasses import dataclass

from tokenclock.errors import ConfigError

PROBE_SIZE = 256  # the probe matmul: (256, 256) @ (256, 256), a few ms even where bf16 is emulated
PROBE_REPEATS = 5
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below AVX512_CORE_BF16: its bf16 kernels are then emulated
_ONEDNN_NO_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


@dataclass(frozen=True)
class Precision:
    """The dtype a run computes in and the reason, as printed and recorded."""

    dtype: str
    """bf16 (autocast) or fp32."""
    reason: str
    """One line: why this dtype (the setting or the capability that chose it)."""
    emulated: bool = False
    """bf16 forced on a CPU without native bf16 (it runs, many times slower than fp32)."""

    def amp(self):
        """The autocast dtype (torch.bfloat16), or None for plain fp32."""
        import torch

        return torch.bfloat16 if self.dtype == "bf16" else None

    def record(self) -> dict:
        """What the manifest and the train summary keep: dtype, reason and the machine."""
        return {"dtype": self.dtype, "reason": self.reason, "emulated": self.emulated, **machine()}


@functools.cache
def machine() -> dict:
    """The facts a timing or a dtype choice depends on: CPU model, cores, torch version, torch's
    CPU kernel capability (AVX2, AVX512, ...; ATEN_CPU_CAPABILITY can lower it), native bf16
    units (AMX tiles, AVX512-BF16), and the CUDA device when there is one."""
    import torch

    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "capability": torch.backends.cpu.get_cpu_capability(),
            "amx": _flag("_is_amx_tile_supported"), "avx512_bf16": _flag("_is_avx512_bf16_supported")}
    if torch.cuda.is_available():
        info["cuda"] = torch.cuda.get_device_name()
    return info


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _flag(name: str) -> bool:
    import torch

    fn = getattr(torch.cpu, name, None)
    return bool(fn()) if fn is not None else False


def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 units torch uses: AMX tiles or AVX512-BF16, with torch's kernels
    not held below AVX512 (ATEN_CPU_CAPABILITY=avx2, or ONEDNN_MAX_CPU_ISA below AVX512_CORE_BF16,
    make a CPU with them compute as one without). Decided by capability, not by timing, so that a
    loaded machine never trains one run in another dtype than the next (a timed probe under load
    measured bf16 at 0.02x the speed of fp32 on a CPU where it is 3-5x faster when idle)."""
    m = machine()
    isa_cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return bool(m["amx"] or m["avx512_bf16"]) and "AVX512" in m["capability"].upper() \
        and isa_cap not in _ONEDNN_NO_BF16


@functools.cache
def cpu_bf16_speedup() -> float:
    """fp32 time / bf16 time of the probe matmul on this CPU (> 1: bf16 is faster), measured once
    per process: best of PROBE_REPEATS after one warm-up, on torch's current thread count. It
    states how much slower a forced bf16 runs where bf16 is emulated; it chooses nothing."""
    import torch

    def best(dtype) -> float:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(PROBE_SIZE, PROBE_SIZE, generator=gen).to(dtype)
        b = torch.randn(PROBE_SIZE, PROBE_SIZE, generator=gen).to(dtype)
        a @ b
        t = float("inf")
        for _ in range(PROBE_REPEATS):
            t0 = time.perf_counter()
            a @ b
            t = min(t, time.perf_counter() - t0)
        return max(t, 1e-9)

    return best(torch.float32) / best(torch.bfloat16)


def _held() -> str:
    """What keeps present bf16 units unused: torch's capability or oneDNN's ISA cap."""
    cap = machine()["capability"]
    if "AVX512" not in cap.upper():
        return f"torch's kernels are held to {cap}"
    return f"oneDNN is held to {os.environ.get('ONEDNN_MAX_CPU_ISA', '').strip().upper()}"


def _units() -> list[str]:
    """The bf16 units this CPU has (whether torch uses them or not)."""
    m = machine()
    return [u for u, k in (("AMX", "amx"), ("AVX512-BF16", "avx512_bf16")) if m[k]]


def _cpu_words() -> str:
    m = machine()
    units = _units()
    if not units:
        return f"{m['cpu']}, torch capability {m['capability']}, no AMX or AVX512-BF16"
    held = "" if native_bf16_cpu() else f", unused: {_held()}"
    return f"{m['cpu']}, torch capability {m['capability']}, bf16 units: {' and '.join(units)}{held}"


def choose(dtype: str, device: str) -> Precision:
    """The precision of a run asked for `dtype` (auto | bf16 | fp32) on `device` (cpu, cuda[:N])."""
    import torch

    if dtype not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"unknown dtype '{dtype}'", "use auto, bf16 or fp32")
    if dtype == "fp32":
        return Precision("fp32", "fp32 as configured")
    if device.startswith("cuda"):
        if dtype == "bf16":
            return Precision("bf16", "bf16 as configured")
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", f"auto: {torch.cuda.get_device_name(device)} computes bf16 natively")
        return Precision("fp32", f"auto: {torch.cuda.get_device_name(device)} has no bf16")
    if dtype == "bf16":
        if native_bf16_cpu():
            return Precision("bf16", f"bf16 as configured ({_cpu_words()})")
        slow = 1.0 / cpu_bf16_speedup()
        return Precision("bf16", f"bf16 as configured, but this CPU has no native bf16 ({_cpu_words()}): "
                                 f"a bf16 matmul took {slow:.0f}x the time of an fp32 one here; "
                                 "set dtype=fp32 (or auto) to run at full speed", emulated=True)
    if not native_bf16_cpu():
        return Precision("fp32", f"auto: no native bf16 on this CPU ({_cpu_words()})")
    return Precision("bf16", f"auto: native bf16 on this CPU ({_cpu_words()})")


_SAID: set[str] = set()


def say(what: str, p: Precision) -> None:
    """Print the choice once per process (a study trains many runs; each line appears once): a
    warning where bf16 is forced on a CPU that emulates it."""
    line = f"tokenclock: {'warning: ' if p.emulated else ''}{what} {p.dtype}: {p.reason}"
    if line not in _SAID:
        _SAID.add(line)
        print(line, flush=True)


def header(dtype: str | None = None, device: str = "cpu") -> str:
    """One line that says where a measurement ran: CPU model, cores, torch and its capability,
    native bf16, the CUDA device, and (given `dtype`) what it resolves to here."""
    m = machine()
    units = "+".join(_units()) or "none"
    if units != "none" and not native_bf16_cpu():
        units += f" (unused: {_held()})"
    parts = [f"cpu: {m['cpu']}", f"cores {m['cores']} (torch threads {m['threads']})",
             f"torch {m['torch']}", f"capability {m['capability']}", f"native bf16 units: {units}"]
    if "cuda" in m:
        parts.append(f"cuda: {m['cuda']}")
    if dtype is not None:
        p = choose(dtype, device)
        parts.append(f"dtype {dtype} -> {p.dtype}")
    return "machine: " + "; ".join(parts)
