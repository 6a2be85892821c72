"""`tamiyo learner`: train on sampled batches; publish priorities, telemetry and policy snapshots."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    from tamiyo.bus.clients import add_kafka_arguments
    from tamiyo.cli.common import add_run_arguments

    p = sub.add_parser("learner", help="PPO / IMPALA learner: batches in, priorities + snapshots + telemetry out")
    p.add_argument("--algo", choices=("impala", "ppo"), default="impala")
    p.add_argument("--env", default="host-sim", help="the actors' env (its graph schema shapes the network)")
    p.add_argument("--policy-id", default="tamiyo")
    p.add_argument("--snapshot-every", type=int, default=1, help="publish a snapshot every K updates")
    p.add_argument("--telemetry-every", type=int, default=1, help="telemetry every N updates")
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    p.add_argument("--init-from", default=None, help="start from a policy .safetensors (phased PPO -> IMPALA)")
    p.add_argument("--max-updates", type=int, default=None)
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--group-id", default=None)
    p.add_argument("--hidden", type=int, default=64, help="GNN width")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the algorithm's)")
    p.add_argument("--entropy-coef", type=float, default=None)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--ppo-epochs", type=int, default=4)
    p.add_argument("--minibatch-size", type=int, default=32)
    p.add_argument("--target-kl", type=float, default=0.01)
    p.add_argument("--total-frames", type=int, default=1_000_000, help="PPO LR schedule horizon")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    add_run_arguments(p)
    add_kafka_arguments(p, bootstrap_required=True)
    p.set_defaults(handler=_handle)


def config_from_args(args: argparse.Namespace):
    from tamiyo.learner.impala import ImpalaConfig
    from tamiyo.learner.model import ModelConfig
    from tamiyo.learner.ppo import PPOConfig
    from tamiyo.learner.service import LearnerConfig

    impala = ImpalaConfig(gamma=args.gamma)
    ppo = PPOConfig(
        gamma=args.gamma,
        update_epochs=args.ppo_epochs,
        minibatch_size=args.minibatch_size,
        target_kl=args.target_kl,
        total_env_steps=args.total_frames,
    )
    if args.lr is not None:
        impala.learning_rate = ppo.learning_rate = args.lr
    if args.entropy_coef is not None:
        impala.entropy_cost = ppo.ent_coef = args.entropy_coef
    return LearnerConfig(
        algo=args.algo,
        env=args.env,
        policy_id=args.policy_id,
        run_id=args.run,
        snapshot_every=args.snapshot_every,
        telemetry_every=args.telemetry_every,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        init_from=args.init_from,
        max_updates=args.max_updates,
        max_seconds=args.max_seconds,
        group_id=args.group_id,
        device=args.device,
        seed=args.seed,
        model=ModelConfig(hidden=args.hidden),
        impala=impala,
        ppo=ppo,
    )


def _handle(args: argparse.Namespace) -> int:
    from tamiyo.bus.clients import settings_from_args
    from tamiyo.cli.common import run_until_signalled, setup_logging, topics_from_args
    from tamiyo.learner.service import LearnerService

    setup_logging(args.verbose)
    service = LearnerService(config_from_args(args), settings_from_args(args), topics_from_args(args))
    print(json.dumps(run_until_signalled(coro_factory=service.run)))
    return 0
