"""What a training run shows while it runs: a tqdm bar inside each epoch on
a terminal, and one line per epoch everywhere."""
from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager


class Progress:
    """Where the loop reports. One line per epoch (on a TTY, in a pipe or a
    file: logs get no bar spam), and on a TTY a tqdm bar inside each epoch.
    A ticker thread redraws the bar every ``tick`` seconds, so it moves (its
    clock at least) even while one step or the evaluation takes longer."""

    def __init__(self, stream=None, enabled: bool = True, tick: float = 1.0):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.tick = tick

    @contextmanager
    def bar(self, desc: str, total: int):
        """A tqdm bar for one epoch (None off a TTY), closed and cleared on exit."""
        if not self.tty:
            yield None
            return
        from tqdm import tqdm

        cols, rows = self.size()
        bar = tqdm(total=total, desc=desc, unit="img", file=self.stream, leave=False, ncols=cols, nrows=rows,
                   mininterval=0.2, smoothing=0.1)
        stop = threading.Event()

        def tick():
            while not stop.wait(self.tick):
                bar.refresh()

        ticker = threading.Thread(target=tick, name="svertka-progress", daemon=True)
        ticker.start()
        try:
            yield bar
        finally:
            stop.set()
            ticker.join()
            bar.close()

    def size(self) -> tuple[int, int]:
        """The terminal's (columns, rows); (100, 24) where it reports none: a pty
        without a size gives 0 x 0, and tqdm then draws nothing."""
        try:
            cols, rows = os.get_terminal_size(self.stream.fileno())
        except (AttributeError, OSError, ValueError):
            cols = rows = 0
        return cols or 100, rows or 24

    def line(self, text: str):
        if self.enabled:
            self.stream.write(text + "\n")
            self.stream.flush()
