"""How long runs (reconcile, audit) tell what they did, in one line."""


def ranked_outcomes(outcomes: dict[str, int]) -> str:
    """`: credited 30, still_pending 4, ...`, commonest first; empty when there are none."""
    ranked = sorted(outcomes.items(), key=lambda item: (-item[1], item[0]))
    return (": " + ", ".join(f"{outcome} {count}" for outcome, count in ranked)) if ranked else ""
