"""Learning proofs on CartPole-v1, one fixed seed each (bench/learning.py runs three)."""

import pytest
import torch

from tamiyo.contracts.env_schemas import env_schema
from tamiyo.learner.inprocess import train_impala, train_ppo
from tamiyo.learner.presets import CARTPOLE_IMPALA, CARTPOLE_MODEL, CARTPOLE_PPO
from tamiyo.producers.experience import env_collectors

ENV = "gym:CartPole-v1"

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_ppo_reaches_450_on_cartpole_within_200k_steps():
    curve = train_ppo(
        env_schema(ENV), env_collectors(ENV, seed=1), CARTPOLE_PPO, seed=1, model_config=CARTPOLE_MODEL, threshold=450
    )
    assert curve.reached_at is not None and curve.reached_at <= 200_000, curve.to_dict()


def test_impala_with_lagging_actors_reaches_400_on_cartpole_within_500k_steps():
    curve = train_impala(
        env_schema(ENV),
        env_collectors(ENV, seed=1),
        CARTPOLE_IMPALA,
        seed=1,
        total_env_steps=500_000,
        refresh_every=4,
        model_config=CARTPOLE_MODEL,
        threshold=400,
    )
    assert curve.reached_at is not None and curve.reached_at <= 500_000, curve.to_dict()
    # The actors really were behind the learner, so V-trace had off-policy data to correct.
    assert curve.last_metrics["policy_lag_mean_overall"] > 1.0
