#!/usr/bin/env bash
# The install as a user does it, each in a fresh venv under a temp dir, run from outside the repo:
#   1. `pip install .` with no extras: no torch, no dev tools; `import svertka`, the analysis
#      commands, a 1-epoch NumPy training that writes a checkpoint, eval, an image through Pillow,
#      and `train` without --backend falling back to the NumPy engine.
#   2. `pip install torch==2.13.0`, then `pip install '.[torch]'`: the same, plus a 1-epoch torch training.
#   3. the [torch] extra, read by pip from the built metadata, accepts torch 2.13 and the newest
#      2.14 on the index, and no dependency has an upper cap. torch itself is not downloaded.
# Usage: scripts/check_install.sh      PY=python3.12 picks the interpreter; KEEP=1 keeps the temp dir.
set -euo pipefail
unset PYTHONPATH
PY=${PY:-python3}
TORCH_PIN=${TORCH_PIN:-torch==2.13.0}  # the CPU wheel on disk here; a range could pull a CUDA build
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/svertka-install.XXXXXX")
trap '[ -n "${KEEP:-}" ] && echo "kept $tmp" || rm -rf "$tmp"' EXIT
cd "$tmp"  # so that nothing imports the repo's src/ by accident
t0=$SECONDS

step() { printf '\n== [%3ds] %s\n' $((SECONDS - t0)) "$*"; }
fail() { echo "check_install: FAILED: $*" >&2; exit 1; }
expect() {  # expect NEEDLE COMMAND...: the command succeeds and its stdout+stderr contain NEEDLE
  local needle=$1 out
  shift
  out=$("$@" 2>&1) || { printf '%s\n' "$out" | tail -5 >&2; fail "$* exited non-zero"; }
  grep -qF -- "$needle" <<<"$out" || { printf '%s\n' "$out" | tail -5 >&2; fail "$* did not print '$needle'"; }
}

# Build from a copy of what git tracks (plus new files it does not ignore): a stale build/ or
# *.egg-info in the checkout must not hide a file that the package forgot.
mkdir "$tmp/svertka"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf -) \
  | tar -xf - -C "$tmp/svertka"

pip_install() {  # PIP ARGS...: quiet, minus this machine's warnings about index folders it lacks
  "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

check_common() {  # VENV TORCH_WANTED(yes|no): imports, no dev tools, the analysis commands
  local v=$1 bin=$1/bin
  "$bin/pip" check >/dev/null || fail "pip check: broken dependencies in $v"
  "$bin/python" - "$2" <<'EOF' || fail "imports in $v"
import importlib.util, sys
import svertka, svertka.analysis, svertka.backends.numpy, svertka.viz  # noqa: F401
dev = [m for m in ("pytest", "xdist", "hypothesis", "ruff") if importlib.util.find_spec(m)]
if dev:
    sys.exit(f"dev tools came with a plain install: {dev}")
has_torch = importlib.util.find_spec("torch") is not None
if has_torch != (sys.argv[1] == "yes"):
    sys.exit(f"torch importable: {has_torch}, expected {sys.argv[1]}")
EOF
  expect "(Python 3." "$bin/svertka" --version
  expect "resnet50" "$bin/svertka" models
  expect "Total params: 25,557,032" "$bin/svertka" summary resnet50
  expect "n = 50" "$bin/svertka" rf
  expect "= 18,496 parameters" "$bin/svertka" params conv --in 32 --out 64 -k 3
  expect "mobilenet_v1" "$bin/svertka" compare
}

check_run() {  # RUN_DIR: a training run that wrote its checkpoints
  for f in config.json metrics.jsonl last.safetensors best.safetensors; do
    [ -s "$1/$f" ] || fail "$1/$f is missing"
  done
}

step "venv 1: pip install . (no extras)"
"$PY" -m venv "$tmp/venv-numpy"
V1=$tmp/venv-numpy/bin
pip_install "$V1/pip" install -q "$tmp/svertka"
check_common "$tmp/venv-numpy" no
expect "torch not installed" "$V1/svertka" --version
step "venv 1: svertka train lenet5 --backend numpy --data fashion-mnist-mini --epochs 1"
expect "test accuracy" "$V1/svertka" train lenet5 --backend numpy --data fashion-mnist-mini --epochs 1 \
  -o "$tmp/run-numpy" -q
check_run "$tmp/run-numpy"
expect "top-1" "$V1/svertka" eval "$tmp/run-numpy" --backend numpy --limit 500
# the labelled picture needs the plots extra; without it eval says so and prints the matrix
expect "no confusion.png without matplotlib" "$V1/svertka" eval "$tmp/run-numpy" --backend numpy --limit 100
[ ! -e "$tmp/run-numpy/confusion.png" ] || fail "eval wrote confusion.png without matplotlib"
expect "wrote" "$V1/svertka" augment --data fashion-mnist-mini -n 8 --out "$tmp/augment.jpg"
"$V1/python" -c "import sys; from PIL import Image; sys.exit(Image.open(sys.argv[1]).format != 'JPEG')" \
  "$tmp/augment.jpg" || fail "augment --out x.jpg did not write a JPEG"
step "venv 1: svertka train without --backend uses the NumPy engine and says so"
expect "uses the NumPy engine" "$V1/svertka" train lenet5 --data fashion-mnist-mini --epochs 1 \
  --limit-train 256 --limit-test 256 -o "$tmp/run-fallback" -q
check_run "$tmp/run-fallback"

step "venv 2: pip install $TORCH_PIN, then pip install '.[torch]'"
"$PY" -m venv "$tmp/venv-torch"
V2=$tmp/venv-torch/bin
# --no-compile: byte-compiling torch's thousands of modules takes minutes and proves nothing here
pip_install "$V2/pip" install -q --no-compile "$TORCH_PIN"
pip_install "$V2/pip" install -q "$tmp/svertka[torch]"
check_common "$tmp/venv-torch" yes
"$V2/python" -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != sys.argv[1])" \
  "${TORCH_PIN#torch==}" || fail "installing '.[torch]' replaced $TORCH_PIN"
step "venv 2: svertka train lenet5 --backend torch --data fashion-mnist-mini --epochs 1"
expect "test accuracy" "$V2/svertka" train lenet5 --backend torch --data fashion-mnist-mini --epochs 1 \
  -o "$tmp/run-torch" -q
check_run "$tmp/run-torch"
expect "top-1" "$V2/svertka" eval "$tmp/run-torch" --limit 500

step "the [torch] extra accepts torch 2.13 and 2.14; no dependency is capped"
# pip reads svertka's requirements from the built metadata (--no-deps: nothing else is fetched);
# they are then matched against the torch versions the index lists. A full `pip install --dry-run
# '.[torch]' torch==2.14.*` would also resolve torch's CUDA dependencies, downloading some of them.
pip_install "$V2/pip" install -q --dry-run --no-deps --ignore-installed --report "$tmp/report.json" \
  "$tmp/svertka[torch]"
listed=$("$V2/pip" index versions torch 2>/dev/null | sed -n 's/^Available versions: //p' || true)
"$V2/python" - "$tmp/report.json" "$listed" <<'EOF' || fail "the [torch] extra"
import json, sys
from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.version import Version

report, listed = json.load(open(sys.argv[1])), sys.argv[2]
meta = next(i["metadata"] for i in report["install"] if i["metadata"]["name"] == "svertka")
reqs = [Requirement(r) for r in meta.get("requires_dist", [])]
capped = [str(r) for r in reqs if any(s.operator in ("<", "<=", "==", "===", "~=") for s in r.specifier)]
if capped:
    sys.exit(f"upper caps on dependencies: {capped}")
torch = [r for r in reqs if r.name == "torch"]
if not torch or any(r.marker is None or not r.marker.evaluate({"extra": "torch"}) for r in torch):
    sys.exit(f"torch must be required by the [torch] extra only, got {[str(r) for r in torch]}")
available = [Version(v) for v in listed.replace(",", " ").split()]
if not available:
    print("the index lists no torch versions (offline?); checking 2.13.0 and 2.14.0")
    available = [Version("2.13.0"), Version("2.14.0")]
for series in ((2, 13), (2, 14)):
    found = [v for v in available if v.release[:2] == series and not v.is_prerelease]
    v = max(found) if found else Version("%d.%d.0" % series)
    ok = all(r.specifier.contains(v) for r in torch)
    print(f"svertka[torch] ({', '.join(str(r.specifier) for r in torch)}) with torch {v}: "
          f"{'resolves' if ok else 'CONFLICT'}{'' if found else ' (not on the index: version assumed)'}")
    if not ok:
        sys.exit(1)
EOF

step "install checks passed"
