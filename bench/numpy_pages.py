"""What one float64 NumPy pass costs when its temporaries come and go, as in a check.

    .venv/bin/python bench/numpy_pages.py
    MALLOC_TRIM_THRESHOLD_=536870912 MALLOC_MMAP_THRESHOLD_=268435456 \
        .venv/bin/python bench/numpy_pages.py

Prints, per n, the time of one ``a * b`` into a fresh array, into a reused one (``out=``), and
per op of a chain of three ops whose temporaries are freed together (what gradcheck's float64
arithmetic does). At n >= 1e5 glibc returns the freed arrays to the OS and the next allocation
faults the pages in again: the chain then costs several times the single op. Run it again
with the two glibc settings above, which keep freed memory in the process (both are needed:
fixing the trim threshold alone also fixes the mmap threshold at its 128 KiB default, so every
large array is mapped afresh), to see that cost go. Plain NumPy: no TensorFlow, no gradcheck.
"""

import timeit

import numpy as np


def per_call(fn, number: int) -> float:
    """Best of 5 repeats, seconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number


def costs(rng: np.random.Generator, n: int) -> tuple[float, float, float]:
    """Seconds for one op into a fresh array, into a reused one, and per op of a chain."""
    a, b, out = rng.random(n), rng.random(n), np.empty(n)

    def chain():
        x = a * b
        y = x + a
        return (y * b).sum()

    return (per_call(lambda: a * b, 200), per_call(lambda: np.multiply(a, b, out=out), 200),
            per_call(chain, 100) / 3)


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'n':>9} {'fresh us':>9} {'out= us':>9} {'chain us/op':>12}")
    for n in (10_000, 100_000, 1_000_000):
        fresh, reused, chained = costs(rng, n)
        print(f"{n:>9} {fresh * 1e6:>9.1f} {reused * 1e6:>9.1f} {chained * 1e6:>12.1f}")


if __name__ == "__main__":
    main()
