"""Test configuration: hypothesis profiles (bounded in CI, thorough on request); a guard on dynamo's limits."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("RAVINE_HYPOTHESIS", "ci"))


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if dynamo hit a recompile limit anywhere in it: past the limit a fused step runs uncompiled,
    silently (slower, and without the compiled kernel's rounding), so a test could pass or fail for the wrong
    reason. ravine raises the limit for its fused step (ravine.engine.fused.RECOMPILE_LIMIT)."""
    import sys

    dynamo = sys.modules.get("torch._dynamo.utils")
    if dynamo is None:
        return
    hits = [key for key in dynamo.counters.get("unimplemented", {}) if "recompile limit" in key.lower()]
    if hits:
        print("\nA torch.compile recompile limit was hit during the tests:\n" + hits[0][:400], file=sys.stderr)
        session.exitstatus = 1
