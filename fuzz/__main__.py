"""``python -m fuzz``: run a seeded fuzz campaign, print the table, write JSON.

    python -m fuzz                          # the bounded run of `make test`: ~1,000 inputs per parser
    python -m fuzz --campaign               # the long campaign (>= 100,000 inputs in all)
    python -m fuzz --replay spec_torch:123  # rerun one input in this process, with its traceback
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from .runner import FAILURES, format_table, run_campaign, summarize
from .targets import PARSERS

# The long campaign: the slow parsers (torch compile + forward, checkpoint + predict, a --resume that
# rebuilds a run) get fewer inputs than the byte-level ones.
CAMPAIGN = {"idx_raw": 15_000, "idx_gz": 12_000, "cifar_binary": 8_000, "cifar_python": 12_000,
            "spec_analysis": 15_000, "spec_torch": 5_000, "checkpoint": 5_000, "weights": 12_000,
            "recipe": 8_000, "image": 4_000, "image_folder": 3_000, "resume": 1_000}


# The bounded run of `make test`: 1,000 inputs per parser, fewer for the slow ones so that it stays near
# 90 s on 2 cores (mean CPU per input in the campaign: --resume 127 ms, it rebuilds a run and trains up to an
# epoch; torch compile + forward 32 ms; CIFAR binary 29 ms, its bombs inflate 256 MiB; image folder 24 ms;
# recipe 18 ms; image 16 ms; checkpoint + predict 8 ms; the others under 14 ms).
BOUNDED = {p: 1000 for p in PARSERS} | {"spec_torch": 400, "checkpoint": 400, "resume": 80,
                                        "cifar_binary": 600, "recipe": 600, "image": 600, "image_folder": 500}


def replay(spec: str, seed: int, seeds_dir: Path) -> int:
    import random
    import traceback

    from . import mutate, targets
    from .seeds import make_seeds

    parser, index = spec.split(":")
    seeds = make_seeds(seeds_dir)
    work = Path(tempfile.mkdtemp(prefix="svertka-replay-"))
    path = mutate.make_input(parser, seeds, seeds_dir, random.Random(f"{seed}:{parser}:{index}"), work)
    print(f"input: {path}")
    try:
        targets.run(parser, path, int(index), seeds_dir)
        print("accepted")
    except Exception:
        traceback.print_exc()
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    ap.add_argument("--per-parser", type=int, help="inputs per parser (default: the bounded run's counts, "
                    f"{sum(BOUNDED.values()):,} inputs in all)")
    ap.add_argument("--campaign", action="store_true",
                    help=f"the long campaign: {sum(CAMPAIGN.values()):,} inputs")
    ap.add_argument("--parsers", default=",".join(PARSERS), help="comma-separated subset (default: all)")
    ap.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--nice", type=int, default=0, help="niceness of the workers (default 0)")
    ap.add_argument("--seeds-dir", type=Path, default=Path(tempfile.gettempdir()) / "svertka-fuzz-seeds",
                    help="where the seed files are made (once) and kept")
    ap.add_argument("--json", type=Path, help="write the table and every failure here")
    ap.add_argument("--log", type=Path, help="append every outcome here as a JSON line, as it comes")
    ap.add_argument("--resume", action="store_true",
                    help="keep the outcomes already in --log (same seed) "
                         "and run only the inputs missing there")
    ap.add_argument("--replay", metavar="PARSER:INDEX", help="rerun one input in this process")
    args = ap.parse_args(argv)
    if args.replay:
        return replay(args.replay, args.seed, args.seeds_dir)
    parsers = [p for p in args.parsers.split(",") if p]
    unknown = set(parsers) - set(PARSERS)
    if unknown:
        ap.error(f"unknown parsers {sorted(unknown)}; known: {', '.join(PARSERS)}")
    counts = {p: args.per_parser or (CAMPAIGN if args.campaign else BOUNDED)[p] for p in parsers}
    done = []
    if args.resume and args.log and args.log.is_file():
        for line in args.log.read_text().splitlines():
            try:
                done.append(json.loads(line))
            except json.JSONDecodeError:  # the last line of a run killed mid-write
                pass
    elif args.log:
        args.log.write_text("")
    t0 = time.monotonic()
    results = run_campaign(counts, args.seed, args.seeds_dir, args.jobs, args.nice,
                           progress=lambda s: print(s, file=sys.stderr, flush=True), log=args.log,
                           done=done)
    summary = summarize(results)
    seconds = time.monotonic() - t0
    print(format_table(summary, PARSERS))
    print(f"{len(results):,} inputs in {seconds:.0f} s, seed {args.seed}, {args.jobs} workers")
    failures = [r for r in results if r["outcome"] in FAILURES or r.get("warnings")]
    for r in failures[:20]:
        print(f"  {r['parser']}:{r['index']} {r['outcome']} {r.get('type', '')}: {r.get('msg', '')[:150]}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seed": args.seed, "seconds": round(seconds, 1), "counts": counts,
                                         "table": summary, "failures": failures}, indent=1, default=str))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
