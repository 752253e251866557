"""GAE against hand-computed values; KL estimators and the adaptive KL controller."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents.common.buffer import compute_gae
from agents.common.kl import KLController, kl_estimate
from instruct_env.error import ConfigError, UnknownNameError

GAMMA, LAM = 0.9, 0.8

# Two slots, three steps. Slot 0's episode ends at t=2 (reward 1); slot 1's ends at t=0 (reward 1)
# and a new one runs through the cut, bootstrapped from last_value = 0.5.
REWARDS = [[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]
VALUES = [[0.5, 0.2], [0.6, 0.4], [0.7, 0.3]]
DONES = [[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]
LAST = [0.9, 0.5]

# Slot 0 (no bootstrap: done at t=2):
#   t=2: delta = 1 - 0.7 = 0.3;                     A = 0.3
#   t=1: delta = 0 + 0.9*0.7 - 0.6 = 0.03;          A = 0.03 + 0.9*0.8*0.3 = 0.246
#   t=0: delta = 0 + 0.9*0.6 - 0.5 = 0.04;          A = 0.04 + 0.72*0.246 = 0.21712
# Slot 1:
#   t=2: delta = 0 + 0.9*0.5 - 0.3 = 0.15;          A = 0.15
#   t=1: delta = 0 + 0.9*0.3 - 0.4 = -0.13;         A = -0.13 + 0.72*0.15 = -0.022
#   t=0: done: delta = 1 - 0.2 = 0.8, nothing carried back across the episode end; A = 0.8
EXPECTED_ADV = [[0.21712, 0.8], [0.246, -0.022], [0.3, 0.15]]


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_gae_matches_hand_computed(lib):
    conv = np.array if lib == "numpy" else (lambda x: torch.tensor(x, dtype=torch.float64))
    adv, ret = compute_gae(conv(REWARDS), conv(VALUES), conv(DONES), conv(LAST), GAMMA, LAM)
    adv, ret = np.asarray(adv), np.asarray(ret)
    np.testing.assert_allclose(adv, EXPECTED_ADV, atol=1e-12)
    np.testing.assert_allclose(ret, np.add(EXPECTED_ADV, VALUES), atol=1e-12)


def test_gae_lambda_one_gamma_one_is_monte_carlo_return():
    # One 4-token episode with reward 1 at the end: every return is 1, advantages 1 - V.
    values = np.array([0.1, 0.2, 0.3, 0.4])
    adv, ret = compute_gae(np.array([0.0, 0, 0, 1]), values, np.array([0.0, 0, 0, 1]), np.array(0.0), 1.0, 1.0)
    np.testing.assert_allclose(ret, [1, 1, 1, 1])
    np.testing.assert_allclose(adv, 1 - values)


def test_kl_estimators():
    logp = torch.log(torch.tensor([0.5, 0.25]))
    ref = torch.log(torch.tensor([0.25, 0.25]))
    # r = p_ref / p = [0.5, 1]: k1 = -log r, k3 = (r - 1) - log r
    np.testing.assert_allclose(kl_estimate("k1", logp, ref), [math.log(2), 0.0], atol=1e-6)
    np.testing.assert_allclose(kl_estimate("k3", logp, ref), [-0.5 + math.log(2), 0.0], atol=1e-6)
    np.testing.assert_allclose(kl_estimate("k2", logp, ref), [0.5 * math.log(2) ** 2, 0.0], atol=1e-6)
    with pytest.raises(UnknownNameError, match="Unknown KL estimator 'k4'"):
        kl_estimate("k4", logp, ref)


def test_kl_controller_fixed_and_adaptive():
    fixed = KLController(0.1)
    assert fixed.update(5.0, 1000) == 0.1
    ctl = KLController(0.1, target=1.0, horizon=1000)
    # KL far above target: error clipped to +0.2, beta *= 1 + 0.2 * 500 / 1000
    assert ctl.update(10.0, 500) == pytest.approx(0.11)
    # KL at half the target: error -0.2 (clipped from -0.5)
    assert ctl.update(0.5, 500) == pytest.approx(0.11 * 0.9)
    restored = KLController(1.0)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value and restored.target == 1.0
    with pytest.raises(ConfigError, match="KL target must be > 0"):
        KLController(0.1, target=0.0)
