"""Shared pieces of the property-based tests: the example budget and the one rule every input must obey.

CI runs a few dozen examples per property (a few seconds each). `INPAINTLAB_FUZZ_EXAMPLES=N` raises the budget for a
long run (`tests/fuzz/run_long.py`), which also sets a per-example deadline so that a hang fails.
"""
import os

from hypothesis import HealthCheck, settings

from inpaintlab import InpaintlabError

EXAMPLES = int(os.environ.get("INPAINTLAB_FUZZ_EXAMPLES", "0")) or None
DEADLINE = int(os.environ.get("INPAINTLAB_FUZZ_DEADLINE_MS", "0")) or None


def budget(ci_examples: int):
    """Hypothesis settings: `ci_examples` in CI, the long run's budget when it sets one; no example database."""
    return settings(max_examples=EXAMPLES or ci_examples, deadline=DEADLINE, database=None, derandomize=EXAMPLES is None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])


def outcome(call, *args, **kwargs):
    """Run `call`: it must succeed or raise an InpaintlabError with a one-line message; any other exception escapes
    (and fails the property)."""
    try:
        result = call(*args, **kwargs)
    except InpaintlabError as error:
        message = str(error)
        assert message.strip() and "\n" not in message, f"not a one-line message: {message!r}"
        return error
    return result
