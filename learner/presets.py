"""Named hyperparameter presets: ONE source of truth for the in-process proofs and the Kafka pipeline.

A preset holds the learner's configs (network, PPO, IMPALA) and, per algorithm,
the shape of the pipeline that feeds it (actors, envs per actor, unroll length,
unrolls per learner batch, replay settings).  `learner/inprocess.py` uses the
configs directly; `tamiyo learner --preset NAME` starts from them and
`tamiyo train --preset NAME` also takes the pipeline shape from them.  An
explicit command-line flag always overrides the preset.

The library defaults (PPOConfig(), ImpalaConfig(), ModelConfig()) stay the
seed's; a preset only says what a particular environment needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tamiyo.learner.impala import ImpalaConfig
from tamiyo.learner.model import ModelConfig
from tamiyo.learner.ppo import PPOConfig

# CartPole-specific settings for the learning proofs.
# PPO follows the rl-baselines3-zoo CartPole tuning: short rollouts, many epochs, gamma .98,
# lambda .8, no entropy bonus, no value clipping.  The KL stop stays on at 0.02 (measured
# in-process: seeds 1-3 reach 450 at ~50-61k steps with it, ~27-39k without).  IMPALA uses small
# batches (16 unrolls x 20 steps) so there are many learner steps in the budget.
CARTPOLE_MODEL = ModelConfig(hidden=64, separate_critic=True)
CARTPOLE_PPO = PPOConfig(
    num_envs=8,
    rollout_length=32,
    minibatch_size=256,
    update_epochs=20,
    learning_rate=1e-3,
    final_lr_ratio=0.0,
    warmup_updates=0,
    ent_coef=0.0,
    gamma=0.98,
    gae_lambda=0.8,
    clip_vloss=False,
    target_kl=0.02,
    total_env_steps=200_000,
)
CARTPOLE_IMPALA = ImpalaConfig(batch_size=16, unroll_length=20, learning_rate=2e-3, entropy_cost=0.01, rmsprop_eps=0.01)


@dataclass(frozen=True)
class PipelineShape:
    """How `tamiyo train` feeds one algorithm: what the actors and the replay consumer get."""

    actors: int
    envs_per_actor: int
    unroll_length: int
    batch_size: int  # unrolls per learner batch
    max_policy_lag: int = 2  # fifo (PPO) staleness limit, in policy versions
    replay_args: tuple[str, ...] = ()  # extra `tamiyo replay` flags (e.g. --max-in-flight 1)

    @property
    def frames_per_batch(self) -> int:
        return self.unroll_length * self.batch_size


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    model: ModelConfig = field(default_factory=ModelConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    impala: ImpalaConfig = field(default_factory=ImpalaConfig)
    pipeline: dict[str, PipelineShape] = field(default_factory=dict)  # algo -> shape


CARTPOLE = Preset(
    name="cartpole",
    description="gym:CartPole-v1 learning proofs (PPO >= 450 within 200k steps, IMPALA >= 400 within 500k)",
    model=CARTPOLE_MODEL,
    ppo=CARTPOLE_PPO,
    impala=CARTPOLE_IMPALA,
    pipeline={
        # One actor stepping 8 envs x 32 steps = one PPO batch of 256 steps, as in-process.  One batch in
        # flight keeps the data as close to on-policy as the bus allows.
        "ppo": PipelineShape(
            actors=1,
            envs_per_actor=CARTPOLE_PPO.num_envs,
            unroll_length=CARTPOLE_PPO.rollout_length,
            batch_size=CARTPOLE_PPO.num_envs,
            max_policy_lag=1,
            replay_args=("--max-in-flight", "1"),
        ),
        "impala": PipelineShape(
            actors=1,
            envs_per_actor=CARTPOLE_IMPALA.batch_size,
            unroll_length=CARTPOLE_IMPALA.unroll_length,
            batch_size=CARTPOLE_IMPALA.batch_size,
        ),
    },
)

# host-sim (IMPALA).  What a 2-core CI box can afford decides the shape: one SAGE layer at width 32
# (measured single-threaded: ~190 actor frames/s and ~80 ms per learner step, against ~40 frames/s
# and ~1.9 s with the default two-layer, width-64, separate-critic network), a small replay buffer
# (400 unrolls) so the learner trains on recent behaviour, a smaller RMSprop epsilon and a larger
# learning rate than the seed's defaults because the rewards are small (an episode's return is the
# accuracy gained, ~0.5).
HOST_SIM_MODEL = ModelConfig(hidden=32, layers=("sage",), separate_critic=False)
HOST_SIM_IMPALA = ImpalaConfig(
    batch_size=16, unroll_length=20, learning_rate=1e-3, entropy_cost=0.0005, rmsprop_eps=0.01
)
HOST_SIM = Preset(
    name="host-sim",
    description="IMPALA on host-sim, sized for a 2-core machine",
    model=HOST_SIM_MODEL,
    impala=HOST_SIM_IMPALA,
    pipeline={
        "impala": PipelineShape(
            actors=2, envs_per_actor=8, unroll_length=20, batch_size=16, replay_args=("--capacity", "400")
        ),
    },
)

PRESETS: dict[str, Preset] = {p.name: p for p in (CARTPOLE, HOST_SIM)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
