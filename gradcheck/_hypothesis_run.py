"""One fuzz item as a Hypothesis test: its settings, and the seed it ran with.

Hypothesis's own settings are honoured, not re-invented: the active profile (``derandomize``,
``max_examples``, the database) and ``--hypothesis-seed`` under pytest apply; an item sets only
what a gradient check needs on top of them (below).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as seeded
from hypothesis.strategies import SearchStrategy

__all__ = ["hypothesis_test", "seed_used"]

# Why each health check is suppressed:
# - too_slow: TensorFlow traces a target on its first call, and every example runs the target
#   several times; slowness here is the check, not the data generation Hypothesis worries about.
# - data_too_large / large_base_example: a declared input_shape such as (None, 64, 64) needs
#   thousands of values even in its smallest example; that is the declaration, not a mistake.
_SUPPRESSED = (HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example)


def hypothesis_test(example: Callable[[tuple[np.ndarray, ...]], None], database_key: bytes,
                    max_examples: int | None, seed: int | None,
                    strategy: SearchStrategy) -> Callable[[], None]:
    """The Hypothesis test calling ``example`` on each input drawn from ``strategy``, keyed in
    the example database by ``database_key``."""
    def gradcheck_fuzz(inputs: tuple[np.ndarray, ...]) -> None:
        example(inputs)

    # Hypothesis keys its example database (and derandomized seed) by a digest of the test
    # function, which mixes in this attribute: one key per target and dtype.
    gradcheck_fuzz._hypothesis_internal_add_digest = database_key
    parent = settings.default
    options: dict[str, Any] = {
        "deadline": None,  # TensorFlow traces on the first call
        "print_blob": True,
        "report_multiple_bugs": False,  # one minimal failure per item
        "suppress_health_check": tuple(parent.suppress_health_check) + _SUPPRESSED,
        # the report explains the failure; Hypothesis's explain phase would rerun examples
        "phases": tuple(p for p in parent.phases if p is not Phase.explain),
    }
    if max_examples is not None:
        options["max_examples"] = max_examples
    test = settings(parent, **options)(given(strategy)(gradcheck_fuzz))
    if seed is not None:
        test = seeded(seed)(test)
    return test


def seed_used(test: Any, seed: int | None) -> int | None:
    """The seed ``test`` ran with: ``seed`` where given, None where the profile is
    derandomized, else ``--hypothesis-seed``'s or the one Hypothesis drew."""
    if seed is not None:
        return seed
    if settings.default.derandomize:
        return None
    from hypothesis import core

    forced = getattr(core, "global_force_seed", None)
    if forced is not None:
        return forced
    return getattr(test, "_hypothesis_internal_use_generated_seed", None)
