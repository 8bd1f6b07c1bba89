"""The run folders under --runs: listing, live metrics, confusion matrices and
predictions. A run is named by its path relative to --runs; every name is
resolved and must stay inside --runs (``RunStore.folder``), so no request
reaches a file outside it, whatever ``..``, encoding or symlink it holds.

Predictions go through ``train.evaluate.predict`` on the run's own backend,
exactly as `svertka predict -w RUN FILE` does; the feature maps come from the
NumPy engine's taps (``viz.runs``), as `svertka plot features` draws them."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
from starlette.exceptions import HTTPException

RUN_MARKERS = ("metrics.jsonl", "config.json")
WEIGHTS = ("best.safetensors", "last.safetensors")
MAX_DEPTH = 3             # runs/<group>/<sub>/<run> at most; deeper folders are not scanned
TAIL_BYTES = 1 << 20      # one metrics request returns at most this much of metrics.jsonl
FEATURE_CHANNELS = 8      # feature maps per stage, the most active (as `svertka plot features`)
LIVE_SECONDS = 60         # a run whose metrics changed this recently and has epochs to go is "training"


class RunStore:
    def __init__(self, root):
        self.root = Path(root).resolve()
        # the engine's taps and a loaded model's state are not thread-safe; requests run in a pool
        self._lock = threading.Lock()
        self._models: dict = {}
        self._confusion: dict = {}

    def locked(self, fn, *args):
        """``fn(*args)`` while no other request uses an engine model (for the RF explorer)."""
        with self._lock:
            return fn(*args)

    # -------------------------------------------------------------- names and folders

    def folder(self, name: str) -> Path:
        """The run folder ``name`` (relative to --runs); 403 outside --runs, 404 if no run is there."""
        if not name or "\x00" in name or Path(name).is_absolute():
            raise HTTPException(404, f"no run named {name!r} under --runs")
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root):
            raise HTTPException(403, f"{name!r} is outside --runs; name a run folder inside it")
        if not (path.is_dir() and any((path / m).is_file() for m in RUN_MARKERS)):
            raise HTTPException(404, f"no run named {name!r} under --runs (see /api/runs)")
        for f in (*RUN_MARKERS, *WEIGHTS, "model.json"):  # the files read from it must be inside too
            if (path / f).is_symlink() and not (path / f).resolve().is_relative_to(self.root):
                raise HTTPException(403, f"{name}/{f} links outside --runs; it is not served")
        return path

    def names(self) -> list[str]:
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):  # symlinked folders are not followed
            here = Path(dirpath)
            depth = len(here.relative_to(self.root).parts)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < MAX_DEPTH else []
            if here != self.root and any(m in filenames for m in RUN_MARKERS):
                found.append(here.relative_to(self.root).as_posix())
        return found

    def list(self) -> list[dict]:
        runs = []
        for name in self.names():
            try:
                runs.append(self.info(name))
            except HTTPException:  # e.g. a run whose files link outside --runs: not listed
                continue
        return sorted(runs, key=lambda r: -r["updated"])

    def info(self, name: str) -> dict:
        path = self.folder(name)
        cfg = read_json(path / "config.json")
        rows, _ = tail_metrics(path / "metrics.jsonl", 0)
        acc = [r.get("test_acc", r.get("val_acc")) for r in rows]
        acc = [a for a in acc if isinstance(a, (int, float))]
        updated = max((p.stat().st_mtime for p in path.iterdir() if p.is_file()), default=0.0)
        epochs = cfg.get("epochs")
        done = rows[-1]["epoch"] if rows else 0
        return {"name": name, "model": cfg.get("model"), "data": cfg.get("data"),
                "backend": cfg.get("backend"), "epochs": epochs, "done": done,
                "last_acc": acc[-1] if acc else None,
                "best_acc": max(acc) if acc else None,
                "weights": any((path / w).is_file() for w in WEIGHTS), "updated": updated,
                "training": bool(isinstance(epochs, int) and done < epochs
                                 and time.time() - updated < LIVE_SECONDS)}

    # -------------------------------------------------------------- metrics

    def metrics(self, name: str, since: int) -> dict:
        path = self.folder(name) / "metrics.jsonl"
        rows, offset = tail_metrics(path, since)
        reset = False
        if offset < since:  # the file shrank (a run restarted in the same folder): start over
            (rows, offset), reset = tail_metrics(path, 0), True
        return {"rows": rows, "offset": offset, "reset": reset, "run": self.info(name)}

    # -------------------------------------------------------------- models

    def _loaded(self, folder: Path):
        """(Loaded on the run's backend, NumPy engine model), cached until the weights change."""
        from ..train.evaluate import load_trained
        from ..viz.runs import load_engine_model

        weights = next((folder / w for w in WEIGHTS if (folder / w).is_file()), None)
        if weights is None:
            raise HTTPException(409, f"run {folder.name} has no weights yet; wait for its first epoch")
        key = (folder, weights.stat().st_mtime_ns)
        if self._models.get(folder, (None,))[0] != key:
            self._models[folder] = (key, load_trained(folder), load_engine_model(folder)[1])
        _, loaded, engine = self._models[folder]
        return loaded, engine

    def predict(self, name: str, image: Path, k: int = 5, invert: str = "auto") -> dict:
        """Top-k of one image file, as `svertka predict`, plus its feature maps at every conv stage."""
        from ..backends.numpy import Tensor, forward_with_taps, no_grad
        from ..train.evaluate import predict
        from ..viz.runs import conv_paths, feature_stages, normalized_image

        folder = self.folder(name)
        with self._lock:
            loaded, engine = self._loaded(folder)
            t0 = time.perf_counter()
            [out] = predict(loaded, [image], k, invert)
            img, x = normalized_image(loaded, image, "yes" if out["inverted"] else "no")
            convs = conv_paths(engine)
            stages = []
            if convs:
                with no_grad():
                    _, taps = forward_with_taps(engine, Tensor(x), convs)
                shapes = {p: taps[p].shape[1:] for p in convs}
                stages = [feature_maps(p, taps[p].data[0]) for p in feature_stages(engine, shapes)]
            ms = 1000 * (time.perf_counter() - t0)
        return {"run": name, "model": loaded.net.name, "top": out["top"], "inverted": out["inverted"],
                "invert_reason": out["invert_reason"], "input": img[..., 0].ravel().tolist()
                if img.shape[2] == 1 else img.mean(axis=2).round().astype(np.uint8).ravel().tolist(),
                "input_size": list(img.shape[:2]), "features": stages, "server_ms": round(ms, 2)}

    def confusion(self, name: str) -> dict:
        """The run's confusion matrix on its test split (as `svertka eval`), cached per weights file."""
        from ..train.evaluate import evaluate

        folder = self.folder(name)
        cfg = read_json(folder / "config.json")
        with self._lock:
            loaded, _ = self._loaded(folder)
            key = self._models[folder][0]
            if self._confusion.get(folder, (None,))[0] != key:
                r = evaluate(loaded, None, cfg.get("root"), limit=cfg.get("limit_test"))
                self._confusion[folder] = (key, {"confusion": r["confusion"],
                                                 "classes": r["classes"] or loaded.classes,
                                                 "top1": r["top1"], "n": r["n"], "data": r["data"],
                                                 "weights": loaded.source.name})
            return {"run": name, **self._confusion[folder][1]}


def feature_maps(path: str, maps: np.ndarray) -> dict:
    """The ``FEATURE_CHANNELS`` most active maps of one stage, each scaled to 0..255 on its own."""
    order = np.argsort(-maps.mean(axis=(1, 2)))[:FEATURE_CHANNELS]
    channels = []
    for ch in order:
        m = maps[ch].astype(np.float64)
        lo, hi = m.min(), m.max()
        scaled = np.zeros_like(m) if hi <= lo else (m - lo) / (hi - lo)
        channels.append({"channel": int(ch), "mean": float(m.mean()),
                         "pixels": np.round(scaled * 255).astype(np.uint8).ravel().tolist()})
    return {"layer": path, "shape": list(maps.shape), "channels": channels}


def read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def tail_metrics(path: Path, since: int) -> tuple[list[dict], int]:
    """The epoch records of metrics.jsonl from byte ``since`` on, and the offset after the last whole
    line: a line still being written is left for the next call. Damaged lines are skipped."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if since > size:
                return [], size
            f.seek(since)
            chunk = f.read(TAIL_BYTES)
    except OSError:
        return [], 0
    end = chunk.rfind(b"\n") + 1
    rows = []
    for line in chunk[:end].splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "epoch" in row:  # NaN (a diverged run) is not JSON: null
            rows.append({k: None if isinstance(v, float) and not np.isfinite(v) else v
                         for k, v in row.items()})
    return rows, since + end
