"""Where a measurement runs: the header every benchmark prints first, on its own.

    python benchmarks/machine.py [--dtype auto|bf16|fp32] [--device auto|cpu|cuda]

Prints the CPU model, cores, torch and its CPU kernel capability, the native bf16 units (AMX,
AVX512-BF16), the dtype `dtype` resolves to here and why, and the yardstick: the bare training
loop's tokens/s of the demo's model (llama-500k, 16 x 256, random tokens). CI prints it before the
tests, so every log says which CPU kind ran it.
"""
from __future__ import annotations

import argparse

from _common import machine_header


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    from tokenclock.forward import resolve_device
    from tokenclock.precision import choose

    machine_header(args.dtype, args.device)
    print(f"why: {choose(args.dtype, resolve_device(args.device)).reason}")


if __name__ == "__main__":
    main()
