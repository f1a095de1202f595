"""What the demo shows while it works: one progress bar per stage, quiet libraries, its thread count."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hubkit.precision import threads_per_worker

Echo = Callable[[str], None]


def bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it", leave=False, disable=not enabled, file=sys.stderr)


@contextlib.contextmanager
def watch_metrics(run_dir: Path, total: int, desc: str, enabled: bool) -> Iterator[None]:
    """A tqdm bar over a training stage, fed by the lines its runner appends to metrics.jsonl."""
    if not enabled:
        yield
        return
    pbar = bar(total, desc, enabled)
    stop = threading.Event()
    path = run_dir / "metrics.jsonl"

    def poll() -> None:
        while not stop.wait(0.5):
            try:
                last = json.loads(path.read_text().splitlines()[-1])
            except (OSError, IndexError, ValueError):  # not there yet, or a line being written
                continue
            pbar.n = min(total, int(last.get("step", pbar.n)))
            loss = last.get("loss")
            if isinstance(loss, (int, float)):
                pbar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            pbar.refresh()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        pbar.close()


class CountingLabeler:
    """A chat labeler that asks its backend in small slices, so a progress bar moves between batches.

    `scrub` characters are removed from the replies: the tiny random model of `--quick` writes byte
    soup that can hold the AV's marker character, which AV training rightly refuses.
    """

    def __init__(self, inner, pbar, slice_size: int, scrub: str = "") -> None:
        self.inner, self.bar, self.slice_size, self.scrub = inner, pbar, slice_size, scrub
        self.name = inner.name  # the label cache and provenance see the real backend's name

    def chat(self, conversations: list) -> list[str]:
        replies: list[str] = []
        for start in range(0, len(conversations), self.slice_size):
            part = conversations[start : start + self.slice_size]
            replies += self.inner.chat(part)
            self.bar.update(len(part))
        for ch in self.scrub:
            replies = [r.replace(ch, "") for r in replies]
        return replies


def default_threads(quick: bool) -> int:
    """The thread policy's count (`hubkit.precision.threads_per_worker`), except one thread for tiny
    models or when other processes already load every core: then a second thread mostly waits on the
    first (measured 3x slower on a loaded 2-core machine)."""
    try:
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:  # no load average on this platform
        busy = False
    return 1 if quick or busy else threads_per_worker(1)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """No per-file download/upload or weight-loading bars from huggingface_hub and transformers: the demo
    shows one bar per stage instead."""
    from huggingface_hub import utils as hf_utils
    from transformers.utils import logging as tf_logging

    hub_was_on = not hf_utils.are_progress_bars_disabled()
    tf_was_on = tf_logging.is_progress_bar_enabled()
    hf_utils.disable_progress_bars()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hub_was_on:
            hf_utils.enable_progress_bars()
        if tf_was_on:
            tf_logging.enable_progress_bar()
