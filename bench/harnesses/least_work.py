"""The least work that reaches a target error: searches over one integer knob, or two.

``least_reaching`` finds the least n with error(n) <= eps for an error that does not increase with n
(gallop by doubling, then bisect): O(log n) evaluations, each cached. Where the error is not
monotone (Nesterov's iterates oscillate) it returns an n with error(n) <= eps whose predecessor is
above eps, which is the least such n wherever the error is monotone.

``least_work_pair`` searches two knobs, a primary one n (inner steps) and a secondary one s (CG
steps, or backpropagated steps) whose work adds up, where neither alone can reach eps: first the
least s that reaches eps with n large (its floor); then s from that floor upward, each with its
least n, while the total keeps falling.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def least_reaching(error_of: Callable[[int], float], eps: float, low: int = 1, high: int = 1 << 20) -> int | None:
    """The least n in [low, high] with ``error_of(n) <= eps``, for an error non-increasing in n; None if
    even ``high`` does not reach it. ``error_of`` may return inf or nan for "not reached"."""
    cache: dict[int, float] = {}

    def reaches(n: int) -> bool:
        if n not in cache:
            cache[n] = error_of(n)
        return cache[n] <= eps  # nan and inf never reach

    if reaches(low):
        return low
    below, n = low, low
    while True:  # gallop: below fails; double until one reaches or the cap does not
        n = min(max(2 * n, n + 1), high)
        if reaches(n):
            break
        if n == high:
            return None
        below = n
    above = n
    while above - below > 1:  # bisect: below fails, above reaches
        middle = (below + above) // 2
        if reaches(middle):
            above = middle
        else:
            below = middle
    return above


@dataclass(frozen=True)
class PairResult:
    primary: int  # n, e.g. inner steps
    secondary: int  # s, e.g. CG steps or backpropagated steps
    work: float
    error: float
    secondary_floor: int  # the least s with which some n reaches eps (s_floor): the secondary knob's least cost


def least_work_pair(
    error_of: Callable[[int, int], float],
    work_of: Callable[[int, int], float],
    eps: float,
    primary_cap: int,
    secondary_cap: int,
    patience: int = 3,
    relative_stride: float = 0.05,
    secondary_within_primary: bool = False,
) -> PairResult | None:
    """The pair (n, s) of least ``work_of(n, s)`` with ``error_of(n, s) <= eps`` among those scanned.

    The error is taken to fall with both n and s (larger n and s: more accurate), to a floor set by the
    other. 1. n_big: the least n reaching eps/100 at s = ``secondary_cap`` (the secondary knob at its
    most accurate), a stand-in for n = infinity. 2. s_floor: the least s reaching eps at n = n_big:
    below it no n reaches eps (up to the 1% n_big leaves). 3. From s_floor up, by strides of
    max(1, ``relative_stride`` * s_floor): each s with its least n (never more than the last one's,
    since more s cannot need more n), stopping after ``patience`` strides without a lower total, or at
    ``secondary_cap``. The optimum is found to within a stride. With
    ``secondary_within_primary`` (truncated backpropagation: T <= K) s is clamped to n wherever it
    exceeds it. Each (n, s) is evaluated once. None if eps is not reached within the caps.
    """
    memo: dict[tuple[int, int], float] = {}

    def clamp(n: int, s: int) -> tuple[int, int]:
        return (n, min(s, n)) if secondary_within_primary else (n, s)

    def error(n: int, s: int) -> float:
        key = clamp(n, s)
        if key not in memo:
            memo[key] = error_of(*key)
        return memo[key]

    n_big = least_reaching(lambda n: error(n, secondary_cap), eps / 100, 1, primary_cap)
    if n_big is None:
        return None
    if secondary_within_primary:
        secondary_cap = min(secondary_cap, n_big)
    s_floor = least_reaching(lambda s: error(n_big, s), eps, 0, secondary_cap)
    if s_floor is None:
        return None
    stride = max(1, round(relative_stride * s_floor))
    best: PairResult | None = None
    n_high, stale, s = n_big, 0, s_floor
    while s <= secondary_cap and stale < patience:
        n = least_reaching(lambda k, s=s: error(k, s), eps, 1, n_high)
        if n is not None:
            n_high = n
            n_used, s_used = clamp(n, s)
            work = work_of(n_used, s_used)
            if best is None or work < best.work:
                best, stale = PairResult(n_used, s_used, work, error(n, s), s_floor), 0
            else:
                stale += 1
        else:
            stale += 1
        s += stride
    return best
