"""Erlang C staffing figures, against the design check and the textbook formula."""

from __future__ import annotations

import math

import pytest

from acd.erlang import agents_for, asa, erlang_b, p_wait, service_level


def textbook_p_wait(a: float, n: int) -> float:
    top = a**n / math.factorial(n) * n / (n - a)
    return top / (sum(a**k / math.factorial(k) for k in range(n)) + top)


def test_design_check_1200_per_hour_200s_80_in_20():
    n = agents_for(1200, 200, 0.80, 20)
    assert n == 73
    assert service_level(1200, 200, n, 20) == pytest.approx(0.817, abs=5e-4)
    assert asa(1200, 200, n) == pytest.approx(10.9, abs=0.05)
    assert service_level(1200, 200, n - 1, 20) < 0.80


@pytest.mark.parametrize("a,n", [(0.5, 1), (2.0, 3), (10.0, 12), (66.6667, 73), (40.0, 55)])
def test_recursion_matches_the_textbook_formula(a, n):
    assert p_wait(a, n) == pytest.approx(textbook_p_wait(a, n), rel=1e-9)


def test_erlang_b_known_values():
    assert erlang_b(1.0, 1) == pytest.approx(0.5)
    assert erlang_b(2.0, 2) == pytest.approx(0.4)
    assert erlang_b(5.0, 0) == 1.0


def test_stable_for_large_centres():
    # 5000 agents: factorials and powers would overflow; the recursion does not
    assert 0.0 < p_wait(4900.0, 5000) < 1.0
    n = agents_for(100_000, 300, 0.9, 20)
    assert n == 8362  # A = 8,333 Erlangs
    assert service_level(100_000, 300, n, 20) >= 0.9 > service_level(100_000, 300, n - 1, 20)


def test_understaffed_and_edge_cases():
    assert p_wait(10.0, 10) == 1.0
    assert service_level(3600, 100, 100, 20) == 0.0  # A = 100 = N
    assert asa(3600, 100, 100) == math.inf
    assert p_wait(0.0, 3) == 0.0
    assert agents_for(0, 200, 0.8, 20) == 0
    with pytest.raises(ValueError):
        agents_for(100, 200, 1.0, 20)


def test_more_agents_never_hurt():
    levels = [service_level(1200, 200, n, 20) for n in range(67, 90)]
    waits = [asa(1200, 200, n) for n in range(67, 90)]
    assert levels == sorted(levels) and waits == sorted(waits, reverse=True)
