"""gradcheck._heap: glibc's malloc thresholds set once, on the first check, unless opted out."""

from __future__ import annotations

import ctypes

import pytest

from gradcheck import _heap


class FakeLibc:
    """A C library whose mallopt records its calls (glibc: it has gnu_get_libc_version)."""

    def __init__(self, glibc: bool = True):
        self.calls: list[tuple[int, int]] = []
        if glibc:
            self.gnu_get_libc_version = lambda: b"2.99"

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


@pytest.fixture
def libc(monkeypatch):
    fake = FakeLibc()
    mallopt = fake.mallopt

    class Wrapped:  # mallopt gets argtypes / restype set on it, as a ctypes function does
        def __call__(self, *args):
            return mallopt(*args)

    fake.mallopt = Wrapped()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: fake)
    monkeypatch.setattr(_heap, "_set", None)
    for name in ("GRADCHECK_KEEP_HEAP", *_heap._USER_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_heap.sys, "platform", "linux")
    return fake


def test_sets_both_thresholds_to_glibcs_own_ceiling_once(libc):
    assert _heap.keep_heap() is True
    assert _heap.keep_heap() is True
    assert libc.calls == [(-3, 32 << 20), (-1, 64 << 20)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


@pytest.mark.parametrize("name, value", [("GRADCHECK_KEEP_HEAP", "0"),
                                         ("MALLOC_TRIM_THRESHOLD_", "131072"),
                                         ("MALLOC_MMAP_THRESHOLD_", "131072")])
def test_the_opt_out_and_the_users_own_malloc_settings_are_left_alone(libc, monkeypatch,
                                                                      name, value):
    monkeypatch.setenv(name, value)
    assert _heap.keep_heap() is False
    assert libc.calls == []


def test_nothing_on_another_c_library(libc, monkeypatch):
    del libc.gnu_get_libc_version
    assert _heap.keep_heap() is False
    assert libc.calls == []


def test_a_check_sets_them(libc, monkeypatch):
    import numpy as np

    import gradcheck

    gradcheck.check(lambda x: x * x, np.array([1.0, 2.0]), modes=())
    assert libc.calls == [(-3, 32 << 20), (-1, 64 << 20)]


def test_a_sweep_sets_them(libc, monkeypatch):
    import tensorflow as tf

    import gradcheck

    gradcheck.sweep(tf.nn.relu6, dtype="bfloat16")
    assert libc.calls == [(-3, 32 << 20), (-1, 64 << 20)]


@pytest.mark.parametrize("kept, float64_calls", [(True, 1), (False, 4)])
def test_the_reference_stacks_large_samples_only_on_a_kept_heap(monkeypatch, kept,
                                                                float64_calls):
    """Past 1 MiB, stacked samples are fresh pages unless the heap is kept (_reference.py):
    the four samples at n = 40 000 (1.3 MB stacked) come from one float64 call on a kept
    heap, from four calls otherwise."""
    import numpy as np
    import tensorflow as tf

    import gradcheck

    monkeypatch.setattr(_heap, "_set", kept)  # as keep_heap() decided it, once
    sizes = []

    def swish(x):
        if x.dtype == tf.float64:
            sizes.append(int(x.shape[0]))
        return x * tf.sigmoid(x)

    n = 40_000
    x = np.random.default_rng(0).uniform(-5, 5, n).astype(np.float32)
    report = gradcheck.check(swish, x, elementwise=True, modes=())
    assert report.ok, report
    assert sizes.count(4 * n + 3) == (float64_calls == 1)  # the four and three rider rows
    assert sum(size == n for size in sizes) >= float64_calls
