"""The cycle collector paused for a run, and given back as found (nemoverify.gc_pause)."""

from __future__ import annotations

import gc
import threading

import pytest

from nemoverify.gc_pause import cycle_collection_paused


def test_a_run_pauses_the_collector_and_restores_it_even_when_it_raises() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), cycle_collection_paused():
        assert not gc.isenabled()
        raise RuntimeError("the run failed")
    assert gc.isenabled()


def test_a_collector_the_caller_had_disabled_stays_disabled() -> None:
    gc.disable()
    try:
        with cycle_collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_runs_on_two_threads_keep_it_paused_until_the_last_ends() -> None:
    first_inside, second_done = threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with cycle_collection_paused():
            first_inside.set()
            second_done.wait(10)
            seen.append(gc.isenabled())  # the second run has ended: still paused for this one

    thread = threading.Thread(target=first)
    thread.start()
    first_inside.wait(10)
    with cycle_collection_paused():
        pass
    second_done.set()
    thread.join(10)
    assert seen == [False] and gc.isenabled()


def test_the_api_verbs_run_with_the_collector_paused(vl_checkpoint: str) -> None:
    from nemoverify import api

    seen: list[bool] = []

    def watch(phases: dict[str, int]):  # type: ignore[no-untyped-def]
        import contextlib

        seen.append(gc.isenabled())
        return contextlib.nullcontext(lambda phase, n: None)

    api.manifest(vl_checkpoint, watch=watch)
    assert seen == [False] and gc.isenabled()
