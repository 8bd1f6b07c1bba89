"""Mutations: each takes a valid seed and a seeded ``random.Random`` and
returns the bytes of a (usually) broken file. ``make_input`` picks the
mutations that fit a parser and writes the input where the worker can run it.
"""
from __future__ import annotations

import gzip
import io
import json
import pickle
import random
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

from .seeds import BOMB_PNGS, ZERO_MEMBER, grey_png, png_chunk

EXTREME_INTS = [0, 1, -1, 2, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53, 2**63 - 1,
                2**63, 2**64, 10**7, 10**9, 10**12, 10**30, -(2**31), -(2**63)]
EXTREME_U32 = [0, 1, 2, 3, 255, 256, 65535, 2**16, 2**24, 2**31 - 1, 2**31, 2**32 - 1]


# ------------------------------------------------------------------ bytes


def flip_bits(data: bytes, r: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(r.choice([1, 1, 2, 4, 8, 32])):
        if b:
            b[r.randrange(len(b))] ^= 1 << r.randrange(8)
    return bytes(b)


def set_bytes(data: bytes, r: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(r.choice([1, 2, 4])):
        if b:
            b[r.randrange(len(b))] = r.choice([0, 1, 0x7F, 0x80, 0xFF, r.randrange(256)])
    return bytes(b)


def set_u32(data: bytes, r: random.Random) -> bytes:
    """An aligned-or-not 32-bit field set to an extreme value, in the head of the file mostly."""
    if len(data) < 4:
        return data + bytes(r.randrange(8))
    hi = min(len(data) - 4, r.choice([16, 64, 512, len(data)]))
    pos = r.randrange(hi + 1)
    v = r.choice(EXTREME_U32)
    return data[:pos] + struct.pack(r.choice([">I", "<I"]), v) + data[pos + 4:]


def truncate(data: bytes, r: random.Random) -> bytes:
    return data[: r.randrange(len(data) + 1)] if data else data


def insert(data: bytes, r: random.Random) -> bytes:
    pos = r.randrange(len(data) + 1)
    if r.random() < 0.5 and data:  # duplicate a slice of the file
        a = r.randrange(len(data))
        chunk = data[a:a + r.choice([1, 4, 64, 1024])]
    else:
        chunk = bytes(r.randrange(256) for _ in range(r.choice([1, 3, 16, 100])))
    return data[:pos] + chunk * r.choice([1, 1, 2, 50]) + data[pos:]


def delete(data: bytes, r: random.Random) -> bytes:
    if not data:
        return data
    a = r.randrange(len(data))
    return data[:a] + data[a + r.choice([1, 2, 8, 100, 4096]):]


BYTE_MUTATIONS = [flip_bits, set_bytes, set_u32, truncate, insert, delete]


def byte_mutate(data: bytes, r: random.Random) -> bytes:
    for _ in range(r.choice([1, 1, 1, 2, 3])):
        data = r.choice(BYTE_MUTATIONS)(data, r)
    return data


# ------------------------------------------------------ structured values


def deep(depth: int, r: random.Random):
    """A list or dict nested ``depth`` levels (built iteratively)."""
    v = r.choice([1, "x", None, []])
    for _ in range(depth):
        v = [v] if r.random() < 0.7 else {"k": v}
    return v


def odd_value(r: random.Random):
    kind = r.randrange(12)
    if kind == 0:
        return r.choice(EXTREME_INTS)
    if kind == 1:
        return r.choice([0.0, -0.0, 0.5, -1.5, 1e-320, 1e308, -1e308, 3.7, 1e-9])
    if kind == 2:
        return r.choice(["", "ten", "x" * 10_000, "../../etc/passwd", "a.b", "\u00e9\u4e2d", "0", "lenet5",
                         "NaN", "__class__", "forward", "_x"])
    if kind == 3:
        return r.choice([True, False])
    if kind == 4:
        return None
    if kind == 5:
        return [r.choice(EXTREME_INTS) for _ in range(r.choice([0, 1, 2, 3, 5]))]
    if kind == 6:
        return {}
    if kind == 7:
        return deep(r.choice([5, 50, 200, 1000]), r)  # deeper nesting comes as text
    if kind == 8:
        return [0] * r.choice([0, 1, 3, 100_000])
    if kind == 9:
        return [[1, 2], [3, 4]]
    if kind == 10:
        return r.choice([float("nan"), float("inf"), -float("inf")])
    return r.choice([7, 3, 2, 1, 64, 1000, 4096, 8192, 8193, 65536, 65537, 10**9])


def _containers(obj, out):
    """Every (container, key) slot in a JSON-like tree."""
    stack = [obj]
    while stack:  # iterative: trees may hold values nested 1,000 deep
        node = stack.pop()
        if isinstance(node, dict):
            out.extend((node, k) for k in node)
            stack.extend(node.values())
        elif isinstance(node, list):
            out.extend((node, i) for i in range(len(node)))
            stack.extend(node)
    return out


def mutate_tree(obj, r: random.Random):
    """Replace, drop or add one value somewhere in a JSON-like tree (in place)."""
    for _ in range(r.choice([1, 1, 2, 3])):
        slots = _containers(obj, [])
        if not slots:
            return odd_value(r)
        container, key = r.choice(slots)
        action = r.random()
        old = container[key]
        if isinstance(old, (int, float)) and not isinstance(old, bool) and r.random() < 0.5:
            # a plausible number, so the input gets past the checks and into the deeper code
            container[key] = r.choice([0, 1, 2, 3, 5, 7, 16, 64, 256, 512, old + 1, old - 1, old * 2,
                                       old * 10, -old, old / 2, old * 0.999])
            continue
        if action < 0.75:
            container[key] = odd_value(r)
        elif action < 0.85 and isinstance(container, dict):
            del container[key]
        elif action < 0.95 and isinstance(container, dict):
            field = r.choice(["type", "junk", "layers", "kernel_size", "num_classes", "root"])
            container[field] = odd_value(r)
        elif isinstance(container, list):
            container.append(odd_value(r))
    return obj


def nudge_number(obj, r: random.Random):
    """One number somewhere in the tree set to another plausible value: the
    input stays well-formed and reaches the code behind the checks."""
    slots = [(c, k) for c, k in _containers(obj, [])
             if isinstance(c[k], (int, float)) and not isinstance(c[k], bool)]
    if not slots:
        return mutate_tree(obj, r)
    for _ in range(r.choice([1, 1, 2])):
        c, k = r.choice(slots)
        old = c[k]
        c[k] = r.choice([0, 1, 2, 3, 4, 5, 7, 8, 16, 31, 64, 100, 256, 512, 1000, 1024, 1025, 4096, 8192,
                         65536, old + 1, old - 1, old * 2, old * 3, old * 10, old * 100, -old, old / 2,
                         old + 0.5])
    return obj


def json_text(obj, r: random.Random) -> bytes:
    return json.dumps(obj, allow_nan=True, indent=r.choice([None, 1])).encode()


def mutate_json(data: bytes, r: random.Random) -> bytes:
    choice = r.random()
    if choice < 0.3:
        return json_text(nudge_number(json.loads(data), r), r)
    if choice < 0.55:
        return json_text(mutate_tree(json.loads(data), r), r)
    if choice < 0.6:  # nesting as text: far deeper than any tree we would build in memory
        n = r.choice([100, 1000, 10**4, 10**5, 10**6])
        return (r.choice(["[", '{"a":']) * n).encode() + r.choice([b"", b"1"])
    if choice < 0.65:
        obj = json.loads(data)
        return json_text([obj] if r.random() < 0.5 else r.choice([1, "x", None, []]), r)
    return byte_mutate(data, r)


# -------------------------------------------------------------------- TOML


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return {float("inf"): "inf", -float("inf"): "-inf"}.get(v, "nan" if v != v else repr(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        pairs = (f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items() if x is not None)
        return "{" + ", ".join(pairs) + "}"
    return '""'  # TOML has no null


def mutate_toml(data: bytes, r: random.Random) -> bytes:
    import tomllib

    choice = r.random()
    if choice < 0.6:
        d = tomllib.loads(data.decode())
        d = mutate_tree(d, r)
        if not isinstance(d, dict):
            d = {"model": d}
        lines = (f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in d.items() if v is not None)
        return "\n".join(lines).encode()
    if choice < 0.67:
        n = r.choice([100, 1000, 10**4, 10**5, 10**6])
        return b"model = " + (r.choice(["[", "{a = "]) * n).encode()
    return byte_mutate(data, r)


# ----------------------------------------------------------------- pickles


class _Call:
    """Pickles as ``func(*args)`` where ``func`` is any importable global."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def deep_key_pickle(depth: int) -> bytes:
    """A dict whose key is a tuple nested ``depth`` deep, written opcode by opcode
    (pickle.dumps itself would recurse): the SIGSEGV of the issue at 10**6."""
    return b"\x80\x02}" + b")" + b"\x85" * depth + b"K\x01s."


def deep_list_pickle(depth: int) -> bytes:
    return b"\x80\x02" + b"(" * depth + b"]" + b"l" * depth + b"."


def evil_pickle(r: random.Random) -> bytes:
    """Pickles that reach for globals, or abuse the ones a CIFAR batch may use."""
    import os

    import numpy as np

    reconstruct = np.zeros(1, np.uint8).__reduce__()[0]
    kind = r.randrange(8)
    if kind == 0:
        obj = {"data": _Call(os.system, ("echo pwned",)), "labels": []}
    elif kind == 1:
        huge = r.choice([10**6, 10**9, 2**40])
        obj = {"data": _Call(reconstruct, (np.ndarray, (huge,), b"b")), "labels": []}
    elif kind == 2:
        obj = {"data": _Call(np.dtype, ("O", False, True)), "labels": []}
    elif kind == 3:
        obj = {"data": np.zeros((2, 3072), np.uint8), "labels": [r.choice(EXTREME_INTS)] * 2}
    elif kind == 4:
        import codecs
        obj = {"data": _Call(codecs.encode, ("eJzLSM3JyQcABiwCFQ==", r.choice(["base64", "zlib", "rot13"]))),
               "labels": []}
    elif kind == 5:
        obj = {"data": np.zeros((2, 3072), r.choice([np.float64, np.int64, object])), "labels": [0, 1]}
    elif kind == 6:
        obj = {"data": _Call(eval, ("1+1",)), "labels": []}
    else:
        obj = {"data": np.zeros((r.choice([0, 1, 5]), r.choice([3072, 3071, 1])), np.uint8), "labels": [0]}
    return pickle.dumps(obj, protocol=r.choice([2, 4, 5]))


def mutate_cifar_python(data: bytes, r: random.Random) -> bytes:
    import numpy as np

    choice = r.random()
    if choice < 0.1:
        return deep_key_pickle(r.choice([100, 1000, 10**4, 10**6]))
    if choice < 0.14:
        return deep_list_pickle(r.choice([100, 1000, 10**5]))
    if choice < 0.3:
        return evil_pickle(r)
    if choice < 0.5:  # type confusion in the batch, pickled again
        obj = pickle.loads(data)  # our own seed: trusted
        obj = {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}
        key = r.choice(list(obj))
        v = odd_value(r)
        obj[key] = v if r.random() < 0.7 else np.asarray(r.choice([[1, 2], [[1] * 3072] * 2, 5]), r.choice(
            [np.uint8, np.float32, np.int64]))
        try:
            return pickle.dumps(obj, protocol=r.choice([2, 4]))
        except (ValueError, OverflowError, RecursionError):
            return data
    if choice < 0.55:
        return gzip.compress(data, mtime=0)
    return byte_mutate(data, r)


# ------------------------------------------------------------------- gzip


def gzip_bomb(header: bytes, seeds_dir: Path, r: random.Random) -> bytes:
    """gzip(header) followed by k members of 16 MiB of zeros: up to a few GiB from a few hundred kB."""
    member = (seeds_dir / ZERO_MEMBER).read_bytes()
    k = r.choice([1, 8, 63, 64, 65, 200])
    return gzip.compress(header, mtime=0) + member * k


def idx_header_extreme(data: bytes, r: random.Random) -> bytes:
    if len(data) < 8:
        return set_u32(data, r)
    ndim = data[3]
    b = bytearray(data)
    choice = r.random()
    if choice < 0.2:
        b[3] = r.choice([0, 1, 2, 3, 4, 8, 255])
    elif choice < 0.3:
        b[2] = r.choice([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF])
    else:
        i = r.randrange(max(1, ndim))
        b[4 + 4 * i:8 + 4 * i] = struct.pack(">I", r.choice(EXTREME_U32))
    return bytes(b)


def mutate_idx(data: bytes, r: random.Random, gz: bool, seeds_dir: Path) -> bytes:
    choice = r.random()
    if gz:
        raw = gzip.decompress(data)
        if choice < 0.1:
            dims = (r.choice([1, 64, 1024, 4096, 2**16, 2**20]), 1024, 1024)
            return gzip_bomb(b"\x00\x00\x08\x03" + struct.pack(">III", *dims), seeds_dir, r)
        if choice < 0.6:
            return gzip.compress(r.choice([idx_header_extreme, byte_mutate])(raw, r), mtime=0)
        return byte_mutate(data, r)
    return idx_header_extreme(data, r) if choice < 0.4 else byte_mutate(data, r)


def mutate_cifar_binary(data: bytes, r: random.Random, seeds_dir: Path) -> bytes:
    choice = r.random()
    if choice < 0.03:  # each costs ~1 s of inflating up to the 256 MiB cap
        return gzip_bomb(data, seeds_dir, r)
    if choice < 0.2:
        return gzip.compress(byte_mutate(data, r), mtime=0)
    if choice < 0.3:
        b = bytearray(data)
        b[3073 * r.randrange(len(data) // 3073)] = r.choice([9, 10, 11, 255])
        return bytes(b)
    return byte_mutate(data, r)


# -------------------------------------------------------------------- PNG


def png_set_size(data: bytes, r: random.Random) -> bytes:
    """IHDR width/height set to extremes, with a correct CRC so Pillow reads it."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return set_u32(data, r)
    ihdr = bytearray(data[16:29])
    for off in r.sample([0, 4], r.choice([1, 2])):
        ihdr[off:off + 4] = struct.pack(">I", r.choice([0, 1, 7999, 8000, 8001, 12000, 20000, 65535,
                                                        2**31 - 1, 2**31, 2**32 - 1]))
    if r.random() < 0.3:
        ihdr[8] = r.choice([1, 2, 4, 8, 16])  # bit depth
        ihdr[9] = r.choice([0, 2, 3, 4, 6, 7])  # colour type
    return data[:8] + png_chunk(b"IHDR", bytes(ihdr)) + data[33:]


def mutate_image(data: bytes, r: random.Random, seeds_dir: Path) -> bytes:
    choice = r.random()
    if choice < 0.06:
        return (seeds_dir / r.choice(sorted(BOMB_PNGS))).read_bytes()
    if choice < 0.1:  # a small IDAT that claims a huge image
        w, h = r.choice([(30000, 30000), (8001, 8000), (2**20, 16), (16, 2**20)])
        return grey_png(w, h, zlib.compress(bytes(1 + w) * 4))
    if choice < 0.35:
        return png_set_size(data, r)
    return byte_mutate(data, r)


# ------------------------------------------------------------ safetensors


def safetensors_parts(data: bytes):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def safetensors_join(header: dict, body: bytes, r: random.Random) -> bytes:
    text = json_text(header, r)
    return struct.pack("<Q", len(text)) + text + body


META_ATTACKS = [("model", 5), ("model", ""), ("model", "../x.json"), ("num_classes", "ten"),
                ("num_classes", 10**7), ("num_classes", 0), ("num_classes", -3), ("num_classes", 2.5),
                ("std", [0]), ("std", [0, 0, 0]), ("mean", []), ("mean", ["a"]), ("input_shape", [1, 28]),
                ("input_shape", [1, 10**6, 10**6]), ("input_shape", [0, 28, 28]), ("classes", ["a"]),
                ("classes", list("abcdefghij") * 2), ("classes", 7), ("input_shape", [3, 32, 32])]


def mutate_safetensors(data: bytes, r: random.Random) -> bytes:
    choice = r.random()
    try:
        header, body = safetensors_parts(data)
    except (ValueError, UnicodeDecodeError, struct.error):
        return byte_mutate(data, r)
    if choice < 0.3:  # the svertka metadata: known attacks and random type confusion
        meta_hdr = header.setdefault("__metadata__", {})
        for key in [k for k in meta_hdr if k.startswith("svertka")] or ["svertka"]:
            meta = json.loads(meta_hdr.get(key, "{}"))
            if r.random() < 0.5 and isinstance(meta, dict):
                k, v = r.choice(META_ATTACKS)
                meta[k] = v
            else:
                meta = mutate_tree(meta, r)
            if r.random() < 0.05:
                meta_hdr[key] = "[" * r.choice([1000, 10**5]) + "]" * r.choice([0, 1000])
            else:
                meta_hdr[key] = json.dumps(meta, allow_nan=True)
        return safetensors_join(header, body, r)
    if choice < 0.5:  # tensor entries: shapes, dtypes, offsets
        names = [k for k in header if k != "__metadata__"]
        if names:
            entry = header[r.choice(names)]
            field = r.choice(["shape", "dtype", "data_offsets"])
            entry[field] = r.choice([odd_value(r), [2**31, 2**31], [10**9], [], ["F32"], "F64", "BOOL", "I64",
                                     [0, 2**63], [5, 3]])
        return safetensors_join(header, body, r)
    if choice < 0.6:
        return safetensors_join(mutate_tree(header, r), body, r)
    return byte_mutate(data, r)


def mutate_pth(data: bytes, r: random.Random) -> bytes:
    choice = r.random()
    if choice < 0.5:  # rewrite data.pkl inside the zip
        src = zipfile.ZipFile(io.BytesIO(data))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                content = src.read(info.filename)
                if info.filename.endswith("data.pkl"):
                    sub = r.random()
                    if sub < 0.3:
                        content = deep_key_pickle(r.choice([100, 1000, 10**4, 10**6]))
                    elif sub < 0.4:
                        content = deep_list_pickle(r.choice([100, 1000, 10**5]))
                    elif sub < 0.55:
                        content = evil_pickle(r)
                    else:
                        content = byte_mutate(content, r)
                dst.writestr(info.filename, content)
        return out.getvalue()
    if choice < 0.6:
        return deep_key_pickle(r.choice([1000, 10**6]))
    return byte_mutate(data, r)


# ---------------------------------------------------------------- inputs

SUFFIX = {"idx_raw": "", "idx_gz": ".gz", "cifar_binary": ".bin", "cifar_python": "",
          "spec_analysis": ".json", "spec_torch": ".json", "recipe": ".toml", "image": ".png"}


def make_input(parser: str, seeds: dict[str, list[Path]], seeds_dir: Path, r: random.Random,
               work: Path) -> Path:
    """Write one mutated input for ``parser`` under ``work``; return its path."""
    if parser.startswith("selftest_"):
        (work / "empty").write_bytes(b"")
        return work / "empty"
    seed = r.choice(seeds[parser])
    if parser in ("image_folder", "resume"):
        dest = work / seed.name
        shutil.copytree(seed, dest)
        files = sorted(p for p in dest.rglob("*") if p.is_file())
        for _ in range(r.choice([1, 1, 1, 2])):
            victim = r.choice(files)
            if parser == "image_folder":
                victim.write_bytes(mutate_image(victim.read_bytes(), r, seeds_dir))
            elif victim.suffix == ".safetensors":
                victim.write_bytes(mutate_safetensors(victim.read_bytes(), r))
            elif victim.suffix in (".json", ".jsonl") and r.random() < 0.9:
                data = victim.read_bytes()
                try:
                    victim.write_bytes(mutate_json(data, r))
                except ValueError:  # metrics.jsonl (one object per line), or already mutated into bytes
                    victim.write_bytes(byte_mutate(data, r))
            elif r.random() < 0.5:
                victim.unlink()
                files.remove(victim)
            else:
                victim.write_bytes(byte_mutate(victim.read_bytes(), r))
        return dest
    data = seed.read_bytes()
    if parser == "idx_raw":
        out = mutate_idx(data, r, False, seeds_dir)
    elif parser == "idx_gz":
        out = mutate_idx(data, r, True, seeds_dir)
    elif parser == "cifar_binary":
        out = mutate_cifar_binary(data, r, seeds_dir)
    elif parser == "cifar_python":
        out = mutate_cifar_python(data, r)
    elif parser in ("spec_analysis", "spec_torch"):
        out = mutate_json(data, r)
    elif parser == "recipe":
        out = mutate_toml(data, r)
    elif parser == "image":
        out = mutate_image(data, r, seeds_dir)
    elif parser in ("weights", "checkpoint"):
        out = mutate_pth(data, r) if seed.suffix == ".pth" else mutate_safetensors(data, r)
    else:
        raise KeyError(parser)
    dest = work / (seed.name if parser in ("weights", "checkpoint", "image") else f"input{SUFFIX[parser]}")
    dest.write_bytes(out)
    return dest
