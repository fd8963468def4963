"""What the three tracking examples share: their command line (sizes, so a test can run them tiny)
and their ending, tokenclock's analysis of the directory the tracker wrote."""
import argparse

import tokenclock as tc


def sizes(argv, out: str, steps: int):
    """--out, --steps, --batch, --seq-len, --n-seqs (traced windows) and --no-report."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=out)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--n-seqs", type=int, default=200)
    ap.add_argument("--no-report", action="store_true", help="stop after fit and spectrum")
    return ap.parse_args(argv)


def analyse(out, report: bool = True) -> None:
    """The same as `tokenclock fit OUT && tokenclock spectrum OUT && tokenclock report OUT`."""
    tc.fit(out, progress=False)
    summary = tc.spectrum(out, progress=False)
    print({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
    if report:
        print("report:", tc.report(out))
