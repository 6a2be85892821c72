"""`tamiyo learner`: train on sampled batches; publish priorities, telemetry and policy snapshots.

Hyperparameters come from, in order of precedence: an explicit flag, the named
``--preset`` (learner/presets.py), the library defaults (the seed's configs).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from tamiyo.cli.common import PRESET_NAMES
from tamiyo.cli.keys import add_signing_arguments

if TYPE_CHECKING:  # the CLI starts without torch; these are imported where they are used
    from _typeshed import DataclassInstance

    from tamiyo.learner.core import LearnerConfig
    from tamiyo.learner.impala import ImpalaConfig
    from tamiyo.learner.ppo import PPOConfig
    from tamiyo.policy.model import ModelConfig

T = TypeVar("T", bound="DataclassInstance")


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


OFF = "off"


def _layers(text: str) -> str:
    kinds = [k for k in text.replace(" ", "").split(",") if k and k != "none"]
    unknown = [k for k in kinds if k not in ("sage", "gatv2")]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown layer kind(s) {unknown}; known: sage, gatv2")
    return ",".join(kinds) or "none"


def _float_or_off(text: str) -> float | str:
    return OFF if text.strip().lower() in ("none", "off") else float(text)


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
    p.add_argument("--stop-when-idle", type=float, default=None, help="stop after S seconds without a batch")
    p.add_argument(
        "--from-recording",
        default=None,
        metavar="FILE.tyrec",
        help="first publish a recorded batch stream (tamiyo topic record) to this run's batches topic, "
        "train on it and stop when it is used up (--stop-when-idle defaults to 10 s)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help="also write this learner's telemetry to DIR as TensorBoard scalars",
    )
    add_hyperparameter_arguments(p, list(PRESET_NAMES))
    add_run_arguments(p)
    add_kafka_arguments(p, bootstrap_required=True)
    add_signing_arguments(p)
    p.set_defaults(handler=_handle)


def add_hyperparameter_arguments(p: argparse.ArgumentParser, presets: list[str]) -> None:
    """The learner's hyperparameters; every default is None = "the preset's, else the library's"."""
    group = p.add_argument_group("hyperparameters (explicit flag > --preset > library default)")

    class _Recording:
        def add_argument(self, *names: str, **kw: Any) -> argparse.Action:
            action = group.add_argument(*names, **kw)
            HYPERPARAMETER_FLAGS[action.dest] = names[0]
            return action

    g = _Recording()
    g.add_argument("--preset", choices=presets, default=None, help="named hyperparameters (learner/presets.py)")
    g.add_argument("--hidden", type=int, default=None, help="GNN width (default 64)")
    g.add_argument("--layers", type=_layers, default=None, help="message passing, e.g. sage,gatv2 ('none': no layers)")
    g.add_argument("--separate-critic", type=_bool, default=None, metavar="BOOL", help="own trunk for the value")
    g.add_argument("--lr", type=float, default=None, help="learning rate (default: the algorithm's)")
    g.add_argument("--entropy-coef", type=float, default=None)
    g.add_argument("--gamma", type=float, default=None, help="discount (default 0.99)")
    g.add_argument("--max-grad-norm", type=float, default=None)
    g.add_argument("--ppo-epochs", type=int, default=None, help="PPO: epochs per batch (default 4)")
    g.add_argument("--minibatch-size", type=int, default=None, help="PPO: steps per minibatch (default 32)")
    g.add_argument("--target-kl", type=_float_or_off, default=None, help="PPO: KL early stop ('none': off)")
    g.add_argument("--gae-lambda", type=float, default=None, help="PPO: GAE lambda (default 0.95)")
    g.add_argument("--clip-coef", type=float, default=None, help="PPO: ratio clip (default 0.2)")
    g.add_argument("--clip-vloss", type=_bool, default=None, metavar="BOOL", help="PPO: clip the value loss")
    g.add_argument("--vf-coef", type=float, default=None, help="PPO: value loss coefficient")
    g.add_argument("--lr-schedule", choices=("linear_decay", "constant"), default=None,
                   help="default: PPO linear_decay, IMPALA constant (presets may differ)")  # fmt: skip
    g.add_argument("--final-lr-ratio", type=float, default=None, help="LR at the end of the schedule / LR")
    g.add_argument("--warmup-updates", type=int, default=None, help="PPO: LR warm-up updates")
    g.add_argument("--total-frames", type=int, default=None,
                   help="LR schedule horizon in frames (default 1,000,000; `tamiyo train`: --frames)")  # fmt: skip
    g.add_argument("--rmsprop-eps", type=float, default=None, help="IMPALA: RMSprop epsilon (default 0.1)")
    g.add_argument("--baseline-cost", type=float, default=None, help="IMPALA: value loss weight (default 0.5)")
    g.add_argument("--critic-warmup-frames", type=int, default=None,
                   help="IMPALA: frames first learned by the value head alone (fine-tuning; default 0)")  # fmt: skip
    g.add_argument("--vtrace-lambda", type=float, default=None, help="IMPALA: V-trace's lambda (default 1)")
    g.add_argument("--init-sharpen", type=float, default=None, metavar="K",
                   help="with --init-from: its logits times K, i.e. temperature 1/K (same greedy policy)")  # fmt: skip


HYPERPARAMETER_FLAGS: dict[str, str] = {}  # dest -> option string, filled by add_hyperparameter_arguments

# The flags one algorithm only reads: given with the other, they would be silently ignored.
ALGORITHM_ONLY: dict[str, tuple[str, ...]] = {
    "ppo": (
        *("ppo_epochs", "minibatch_size", "target_kl", "gae_lambda"),
        *("clip_coef", "clip_vloss", "vf_coef", "warmup_updates"),
    ),
    "impala": ("rmsprop_eps", "baseline_cost", "critic_warmup_frames", "vtrace_lambda"),
}


def check_learner_flags(args: argparse.Namespace) -> None:
    """A UserError for a hyperparameter flag that --algo does not use (PPO's with IMPALA, or the reverse), or
    --init-sharpen without --init-from."""
    from tamiyo.cli.user_errors import UserError

    if getattr(args, "init_sharpen", None) is not None:
        if not args.init_from:
            raise UserError("--init-sharpen sharpens the --init-from policy; give --init-from too")
        if not args.init_sharpen > 0:
            raise UserError(f"--init-sharpen must be > 0, not {args.init_sharpen}")
    for algo, dests in ALGORITHM_ONLY.items():
        given = [HYPERPARAMETER_FLAGS[d] for d in dests if getattr(args, d, None) is not None]
        if given and args.algo != algo:
            them = "them" if len(given) > 1 else "it"
            raise UserError(f"{', '.join(given)}: only --algo {algo} uses {them}, and this run is --algo {args.algo}; "
                            f"drop {them} or change --algo")  # fmt: skip


class _RefusingParser(argparse.ArgumentParser):
    """Raises a UserError where argparse would print usage and exit (every parse error goes through error())."""

    def error(self, message: str) -> NoReturn:
        from tamiyo.cli.user_errors import UserError

        raise UserError(f"learner_args: {message}")


def check_learner_args(argv: list[str], algo: str, init_from: str | None) -> None:
    """check_learner_flags for a run's learner_args (the Python API, config files), before any service starts.

    They come after the run's own --algo and --init-from on the learner's command line, so a later one there
    wins, as it does in the learner.  The flags that are not hyperparameters are left to the learner."""
    from tamiyo.cli.user_errors import UserError

    if not all(isinstance(a, str) for a in argv):
        raise UserError(f"learner_args must be strings (command-line words), not {argv!r}")
    parser = _RefusingParser(add_help=False)
    parser.add_argument("--algo", choices=("impala", "ppo"))
    parser.add_argument("--init-from", default=None)
    add_hyperparameter_arguments(parser, list(PRESET_NAMES))
    args, _ = parser.parse_known_args(["--algo", algo, *(["--init-from", init_from] if init_from else []), *argv])
    check_learner_flags(args)


def hyperparameter_argv(args: argparse.Namespace) -> list[str]:
    """The hyperparameter flags given explicitly (not None), as `tamiyo learner` arguments (--preset excluded)."""
    argv: list[str] = []
    for dest, flag in HYPERPARAMETER_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None and dest != "preset":
            argv += [flag, str(value)]
    return argv


def _set(obj: T, **changes: Any) -> T:
    """dataclasses.replace with only the changes that were given (not None)."""
    given = {k: v for k, v in changes.items() if v is not None}
    return replace(obj, **given) if given else obj


def hyperparameters_from_args(args: argparse.Namespace) -> tuple[ModelConfig, PPOConfig, ImpalaConfig]:
    """(ModelConfig, PPOConfig, ImpalaConfig): the preset's (or the library's), overridden by explicit flags."""
    from tamiyo.learner.impala import ImpalaConfig
    from tamiyo.learner.ppo import PPOConfig
    from tamiyo.learner.presets import get_preset
    from tamiyo.policy.model import ModelConfig

    if args.preset:
        preset = get_preset(args.preset)
        model, ppo, impala = preset.model, preset.ppo, preset.impala
    else:
        model, ppo, impala = ModelConfig(), PPOConfig(), ImpalaConfig()
    layers = None if args.layers is None else tuple(k for k in args.layers.split(",") if k != "none")
    model = _set(model, hidden=args.hidden, layers=layers, separate_critic=args.separate_critic)
    shared = {"gamma": args.gamma, "max_grad_norm": args.max_grad_norm}
    ppo = _set(
        ppo,
        **shared,
        learning_rate=args.lr,
        ent_coef=args.entropy_coef,
        update_epochs=args.ppo_epochs,
        minibatch_size=args.minibatch_size,
        gae_lambda=args.gae_lambda,
        clip_coef=args.clip_coef,
        clip_vloss=args.clip_vloss,
        vf_coef=args.vf_coef,
        lr_schedule=args.lr_schedule,
        final_lr_ratio=args.final_lr_ratio,
        warmup_updates=args.warmup_updates,
        total_env_steps=args.total_frames,
    )
    if args.target_kl is not None:
        ppo = replace(ppo, target_kl=None if args.target_kl == OFF else args.target_kl)
    impala = _set(
        impala,
        **shared,
        learning_rate=args.lr,
        entropy_cost=args.entropy_coef,
        rmsprop_eps=args.rmsprop_eps,
        baseline_cost=args.baseline_cost,
        critic_warmup_frames=args.critic_warmup_frames,
        vtrace_lambda=args.vtrace_lambda,
        lr_schedule=args.lr_schedule,
        final_lr_ratio=args.final_lr_ratio,
        total_env_steps=args.total_frames,
    )
    return model, ppo, impala


def config_from_args(args: argparse.Namespace) -> LearnerConfig:
    from tamiyo.learner.core import LearnerConfig

    check_learner_flags(args)
    model, ppo, impala = hyperparameters_from_args(args)
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
        init_sharpen=1.0 if args.init_sharpen is None else args.init_sharpen,
        max_updates=args.max_updates,
        max_seconds=args.max_seconds,
        stop_when_idle_s=args.stop_when_idle
        if args.stop_when_idle is not None
        else (10.0 if args.from_recording else None),
        group_id=args.group_id,
        device=args.device,
        seed=args.seed,
        model=model,
        impala=impala,
        ppo=ppo,
    )


def _handle(args: argparse.Namespace) -> int:
    from tamiyo.bus.clients import settings_from_args
    from tamiyo.cli.common import run_until_signalled, setup_logging, topics_from_args
    from tamiyo.cli.keys import signer_from_args, trusted_from_args
    from tamiyo.cli.tensorboard_sink import tensorboard_sink

    setup_logging(args.verbose)
    signer = signer_from_args(args)  # before torch is imported: a missing key is one line, at once
    trusted = trusted_from_args(args, signer)
    from tamiyo.learner.service import LearnerService

    settings, topics = settings_from_args(args), topics_from_args(args)
    if args.from_recording:
        import asyncio

        from tamiyo.bus.admin import ensure_topics
        from tamiyo.consumers.topic_replay import replay_file

        asyncio.run(ensure_topics(settings, topics))
        replayed = asyncio.run(replay_file(settings, args.from_recording, topics.batches))
        print(json.dumps({"replayed": replayed}), flush=True)
    with tensorboard_sink(args.tensorboard) as sink:  # closed on the way out: the event file is complete
        service = LearnerService(config_from_args(args), settings, topics, signer, trusted, telemetry_sink=sink)
        summary = run_until_signalled(coro_factory=service.run)
    print(json.dumps(summary))
    return 0
