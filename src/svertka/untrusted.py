"""Reading files a user hands in, without trusting them.

Every guard here decides from what is cheap to look at (a header, a bracket
count, the opcode stream of a pickle) before anything big is allocated or any
recursive parser descends, so a crafted file ends as one svertka error, never
as a traceback, a hang, a memory blow-up or a dead process:

- ``check_nesting`` / ``load_json``: JSON and TOML nested too deep (Python's
  parsers recurse; 10**5 levels crash them);
- ``check_pickle``: pickles nested too deep (the unpickler builds them flat,
  but hashing or printing a tuple nested 10**6 deep overflows the C stack);
- ``Gunzip``: gzip output produced only as far as the caller asks, with a cap;
- ``check_model_meta``: metadata read from checkpoints, typed and bounded.
"""
from __future__ import annotations

import io
import json
import math
import pickletools
import re
import zlib

from .errors import SvertkaError

MAX_NESTING = 64  # svertka's own files nest at most ~10 levels (a zoo spec, a recipe)
MAX_PICKLE_DEPTH = 64  # a CIFAR batch nests 4 levels, a torch state_dict about 6
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841
MAX_INPUT_SIDE = 8192  # pixels per side of a model input
MAX_INPUT_CHANNELS = 4096
MAX_STAT, MIN_STD = 1e4, 1e-6  # normalisation mean/std: pixel statistics, in [0, 1] or [0, 255]

# ------------------------------------------------------------------ nesting

_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
# TOML: strings (basic, literal, multi-line) and comments hide brackets
_TOML_TOKENS = re.compile(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\''
                          r'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*|[\[\]{}]')


def nesting_depth(text: str, toml: bool = False) -> int:
    """The deepest bracket nesting of a JSON (or TOML) text, strings and comments skipped."""
    depth = deepest = 0
    for m in (_TOML_TOKENS if toml else _JSON_TOKENS).finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def check_nesting(text: str, what: str, error: type[SvertkaError], toml: bool = False,
                  limit: int = MAX_NESTING) -> None:
    depth = nesting_depth(text, toml)
    if depth > limit:
        raise error(f"{what} nests {depth} levels deep (svertka reads at most {limit}); "
                    "it is corrupt or not a svertka file")


def _no_constant(name):
    raise ValueError(f"{name} is not a number JSON allows")


def load_json(text: str | bytes, what: str, error: type[SvertkaError], limit: int = MAX_NESTING):
    """``json.loads`` that refuses deep nesting, NaN/Infinity and huge integers
    with one ``error`` naming ``what``."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise error(f"{what} is not UTF-8 text") from None
    check_nesting(text, what, error, limit=limit)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError; so is a 5,000-digit int
        raise error(f"{what} is not valid JSON ({_first_line(e)})") from None


def _first_line(e: Exception, limit: int = 100) -> str:
    text = str(e).split("\n", 1)[0] or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------ pickles

_MUTATORS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}


def check_pickle(data, what: str, error: type[SvertkaError], limit: int = MAX_PICKLE_DEPTH) -> int:
    """Walk one pickle's opcode stream (no object is built) and refuse it when
    the objects it builds nest deeper than ``limit``. Returns the offset just
    past its STOP opcode.

    Each stack slot carries the nesting depth of the object it stands for, in
    a one-item list shared with the memo, so a container filled after being
    memoised (APPENDS to a list fetched by GET) still counts."""
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    stack: list = []
    marks: list[int] = []
    memo: dict = {}
    try:
        for op, arg, _pos in pickletools.genops(stream):
            name = op.name
            if name == "MARK":
                marks.append(len(stack))
                continue
            if name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
                continue
            if name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
                continue
            if name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
                continue
            if name == "STOP":
                return stream.tell()
            # generic: pop what the opcode documents, push what it yields
            items = []
            before = list(op.stack_before)
            if pickletools.markobject in before:
                start = marks.pop()
                items, stack[start:] = stack[start:], []
                before = before[: before.index(pickletools.markobject)]
            for _ in before:
                items.append(stack.pop())
            if name == "DUP":
                stack.extend(items * 2)
                continue
            if not op.stack_after:
                continue
            deepest = max((c[0] for c in items), default=0)
            if name in _MUTATORS:  # the container stays; it now holds the other items
                container = items[-1]
                inner = max((c[0] for c in items[:-1]), default=0)
                container[0] = max(container[0], inner + 1)
                cell = container
            elif items:
                cell = [deepest + 1]
            else:
                cell = [0]
            if cell[0] > limit:
                raise error(f"{what}: its pickled objects nest more than {limit} levels deep; "
                            "refusing to load it (it is corrupt or crafted)")
            stack.append(cell)
    except SvertkaError:
        raise
    except Exception as e:  # ValueError from genops, IndexError/KeyError from a broken stack or memo
        raise error(f"{what}: not a valid pickle ({type(e).__name__}: {_first_line(e, 60)})") from None
    raise error(f"{what}: pickle ends without STOP; the file is truncated")


# --------------------------------------------------------------------- gzip

DEFLATE_MAX_RATIO = 1032  # deflate never expands more than this (258-byte matches in 2 bits)
_CHUNK = 1 << 24


class Gunzip:
    """Decompress a gzip file (one or more members) on demand: ``read(n)``
    inflates at most ``n`` more bytes, so a bomb costs only what is asked for."""

    def __init__(self, raw: bytes, what: str, error: type[SvertkaError]):
        self.raw_size, self.what, self.error = len(raw), what, error
        self._d = zlib.decompressobj(wbits=31)
        self._tail = raw

    def _refused(self, e):
        return self.error(f"{self.what}: corrupt or truncated gzip data ({_first_line(e, 60)}); "
                          "delete it and download again")

    def read(self, n: int) -> bytearray:
        """Exactly ``n`` bytes, or fewer at the end of the data."""
        out = bytearray(n)
        view, got = memoryview(out), 0
        while got < n:
            if self._d.eof:
                rest = self._d.unused_data.lstrip(b"\0")  # gzip allows zero padding between members
                if not rest:
                    break
                self._d, self._tail = zlib.decompressobj(wbits=31), rest
            try:
                chunk = self._d.decompress(self._tail, min(n - got, _CHUNK))
            except zlib.error as e:
                raise self._refused(e) from None
            self._tail = self._d.unconsumed_tail
            if not chunk and not self._tail and not self._d.eof:
                raise self._refused(EOFError("stream ends early"))
            view[got:got + len(chunk)] = chunk
            got += len(chunk)
        del view
        if got < n:
            del out[got:]
        return out

    def read_all(self, limit: int) -> bytes:
        """Everything, refusing data that inflates beyond ``limit`` bytes."""
        parts, total = [], 0
        while True:
            part = self.read(_CHUNK)
            total += len(part)
            if total > limit:
                raise self.error(f"{self.what}: inflates to more than {limit:,} bytes, more than svertka "
                                 "reads from one file; it is not a dataset file")
            parts.append(part)
            if len(part) < _CHUNK:
                return b"".join(parts)


# ---------------------------------------------------------- model metadata


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_model_meta(meta: dict, source: str, error: type[SvertkaError]) -> dict:
    """Type- and range-check the metadata svertka writes beside weights
    (model, num_classes, input_shape, mean, std, classes, data, ...). Keys it
    does not know pass untouched; a known key with a wrong value raises one
    ``error``, before anything is built from it."""
    if not isinstance(meta, dict):
        raise error(f"{source}: its metadata is a {type(meta).__name__}, not an object; re-save the file")

    def bad(key, want):
        raise error(f"{source}: metadata {key}={_short_repr(meta[key])} is not {want}; "
                    "the file is corrupt or not written by svertka")

    for key in ("model", "data", "backend", "aug", "task"):
        if key in meta and meta[key] is not None and not isinstance(meta[key], str):
            bad(key, "a string")
    if meta.get("model") == "":
        bad("model", "a model name")
    nc = meta.get("num_classes")
    if nc is not None and not (_is_int(nc) and 0 <= nc <= MAX_CLASSES):  # 0: a task without classes
        bad("num_classes", f"an integer in 0..{MAX_CLASSES:,}")
    opts = meta.get("task_options")
    if opts is not None and not (isinstance(opts, dict) and len(opts) <= 100
                                 and all(isinstance(k, str) and isinstance(v, str) for k, v in opts.items())):
        bad("task_options", "a table of strings")
    shape = meta.get("input_shape")
    if shape is not None:
        if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(v) for v in shape)
                and 1 <= shape[0] <= MAX_INPUT_CHANNELS and all(1 <= v <= MAX_INPUT_SIDE for v in shape[1:])):
            bad("input_shape", f"[channels, height, width] with sides in 1..{MAX_INPUT_SIDE}")
    for key in ("mean", "std"):
        v = meta.get(key)
        if v is None:
            continue
        if not (isinstance(v, list) and v and all(_is_number(x) and abs(x) <= MAX_STAT for x in v)):
            bad(key, f"a list of numbers in [-{MAX_STAT:g}, {MAX_STAT:g}]")
        if shape is not None and len(v) not in (1, shape[0]):
            bad(key, f"one number per input channel ({shape[0]})")
        if key == "std" and min(v) < MIN_STD:
            bad(key, f"a list of numbers >= {MIN_STD:g}")
    stream = meta.get("stream")  # a --stream run's crop: {"image_size": int, "crop_pct": number}
    if stream is not None and not (isinstance(stream, dict) and _is_int(stream.get("image_size"))
                                   and 1 <= stream["image_size"] <= MAX_INPUT_SIDE
                                   and _is_number(stream.get("crop_pct")) and 0.1 <= stream["crop_pct"] <= 1):
        bad("stream", f"{{image_size: 1..{MAX_INPUT_SIDE}, crop_pct: 0.1..1}}")
    classes = meta.get("classes")
    if classes is not None:
        if not (isinstance(classes, list) and len(classes) <= MAX_CLASSES
                and all(isinstance(c, str) for c in classes)):
            bad("classes", "a list of class names")
        if nc is not None and classes and len(classes) != nc:
            raise error(f"{source}: metadata lists {len(classes)} class names for num_classes={nc}; "
                        "the file is corrupt")
    return meta


def check_train_state(state, source: str, error: type[SvertkaError]) -> dict:
    """The training state a resumable checkpoint carries (epoch, history, best,
    steps_per_epoch, optimizer skeleton), typed before training trusts it."""
    def bad(what):
        raise error(f"{source}: its training state {what}; the file is corrupt, resume from another run "
                    "or start afresh")

    if not isinstance(state, dict):
        bad("is not an object")
    for key in ("epoch", "steps_per_epoch"):
        if not (_is_int(state.get(key)) and 0 <= state[key] <= 10**9):
            bad(f"has no valid {key}")
    history = state.get("history")
    if not (isinstance(history, list) and len(history) == state["epoch"]
            and all(isinstance(h, dict) for h in history)):
        bad("has no history of one record per epoch")
    for h in history:
        if not all(isinstance(k, str) and (v is None or isinstance(v, str) or _is_number(v))
                   for k, v in h.items()):
            bad("has a history record with values that are not numbers")
    if state.get("best") is not None and not _is_number(state["best"]):
        bad("has a best score that is not a number")
    if not isinstance(state.get("optimizer"), dict):
        bad("has no optimizer state")
    return state


def _short_repr(v, limit: int = 40) -> str:
    try:
        text = repr(v)
    except (RecursionError, ValueError):
        text = f"<{type(v).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
