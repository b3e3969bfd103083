"""Shared layers: the version-independent truncated-normal initialiser."""

from __future__ import annotations

import math

import torch

from umt.models.layers import trunc_normal_


def test_trunc_normal_matches_the_truncated_distribution():
    torch.manual_seed(0)
    x = trunc_normal_(torch.empty(400_000), std=1.0, mean=0.5, a=-0.5, b=1.5)
    assert x.min() >= -0.5 and x.max() <= 1.5
    # N(0.5, 1) truncated to mean +- 1: mean 0.5, variance 1 - 2 phi(1) / (Phi(1) - Phi(-1)).
    phi = math.exp(-0.5) / math.sqrt(2 * math.pi)
    mass = math.erf(1 / math.sqrt(2))
    assert abs(float(x.mean()) - 0.5) < 3e-3
    assert abs(float(x.var()) - (1 - 2 * phi / mass)) < 3e-3
    # Wide bounds (the usual std=0.02 init): a plain normal with that std.
    y = trunc_normal_(torch.empty(400_000), std=0.02)
    assert abs(float(y.std()) - 0.02) < 1e-4 and abs(float(y.mean())) < 1e-4


def test_trunc_normal_is_inverse_cdf_of_one_uniform_draw_per_element():
    """The draws are a fixed function of the RNG stream (one uniform per element), so a seeded
    initialisation is the same on every torch release."""
    torch.manual_seed(3)
    x = trunc_normal_(torch.empty(1000), std=0.5, a=-1.0, b=1.0)
    torch.manual_seed(3)
    lo, hi = (0.5 * (1 + math.erf(v / (0.5 * math.sqrt(2)))) for v in (-1.0, 1.0))
    u = torch.empty(1000).uniform_(2 * lo - 1, 2 * hi - 1)
    torch.testing.assert_close(x, torch.erfinv(u) * 0.5 * math.sqrt(2), rtol=0, atol=1e-6)
