"""The bounded, seeded fuzz run of `make test` (issue 16): about 1,000 mutated
inputs per parser, each run in a worker process that observes a traceback, a
hang, a memory blow-up or a crash. Every input must end as accepted or as one
svertka error line. The long campaign is `make fuzz`."""
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("PIL")
pytest.importorskip("safetensors")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the fuzz/ package beside tests/

from fuzz.__main__ import BOUNDED  # noqa: E402
from fuzz.runner import FAILURES, format_table, run_campaign, summarize  # noqa: E402
from fuzz.targets import PARSERS, SELF_TESTS  # noqa: E402


@pytest.fixture(scope="module")
def seeds_dir(tmp_path_factory):
    from fuzz.seeds import make_seeds

    folder = tmp_path_factory.mktemp("fuzz-seeds")
    make_seeds(folder)
    return folder


def test_worker_pool_sees_every_kind_of_failure(seeds_dir):
    results = run_campaign({p: 1 for p in SELF_TESTS}, 0, seeds_dir, jobs=2, cpu_limit=1.0)
    got = {r["parser"]: (r["outcome"], r["type"]) for r in results}
    assert got == {"selftest_traceback": ("other", "ValueError"), "selftest_hang": ("hang", ""),
                   "selftest_memory": ("memory", "MemoryError"), "selftest_segv": ("signal", "SIGSEGV")}


def test_bounded_fuzz_every_parser(seeds_dir):
    assert set(BOUNDED) == set(PARSERS)
    results = run_campaign(BOUNDED, 0, seeds_dir, jobs=2)
    summary = summarize(results)
    assert {p: row["inputs"] for p, row in summary.items()} == BOUNDED
    bad = [r for r in results if r["outcome"] in FAILURES or r.get("warnings")]
    report = "\n".join(f"{r['parser']}:{r['index']} {r['outcome']} {r.get('type')}: "
                       f"{r.get('msg', '')[:200]}\n"
                       f"  replay: python -m fuzz --replay {r['parser']}:{r['index']}" for r in bad[:10])
    assert not bad, format_table(summary, PARSERS) + "\n" + report
    # the mutations reach past the first checks: every parser accepts some inputs and refuses others
    assert all(row["accepted"] and row["svertka"] for row in summary.values()), format_table(summary, PARSERS)
