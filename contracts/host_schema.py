"""The contract of the host envs (host-train and host-sim): graph schema, node features, action heads.

Both envs are one `HostEnv` (producers/host_env.py) over different backends, so their
observation and action spaces are identical by construction; the learner and serving read
the schema from here without building an env.

Graph (one per step), S seed slots, B blueprints, L = S + 1 linear layers:

- ``global`` (1 node), ``layer`` (L nodes, the host's Linear layers in order),
  ``slot`` (S nodes; slot i sits on hidden layer i: a seed there reads layer
  i's input and adds to its ReLU output, which layer i+1 consumes),
  ``blueprint`` (B nodes, the catalog).  Features: see the *_FEATURES tuples
  below (name, meaning); widths are their lengths.
- Relations: layer→layer ``next``/``prev`` (the chain), layer→slot ``hosts``
  (layer i → slot i) and slot→layer ``feeds`` (slot i → layer i+1), blueprint→slot ``fits`` and
  slot→blueprint ``can_grow`` (all pairs: every blueprint fits every slot),
  blueprint→slot ``planted_in`` and slot→blueprint ``grows`` (only for slots that
  hold a seed: which blueprint it is), global→layer/slot/blueprint ``has`` and
  layer/slot/blueprint→global ``part_of``.
- Action heads: ``op`` (readout, 6: WAIT, GERMINATE, ADVANCE, CULL, LR_UP,
  LR_DOWN), ``slot`` (pointer over slots), ``blueprint`` (pointer over
  blueprints).  Joint mask [6, S, B] in C order; ops that do not use a
  slot/blueprint are valid only at (op, 0, 0).
"""

from __future__ import annotations

import numpy as np

from tamiyo.contracts.graph import ActionHead, GraphSchema, NodeType, Relation

OPS: tuple[str, ...] = ("WAIT", "GERMINATE", "ADVANCE", "CULL", "LR_UP", "LR_DOWN")
OP_WAIT, OP_GERMINATE, OP_ADVANCE, OP_CULL, OP_LR_UP, OP_LR_DOWN = range(6)
NUM_OPS = len(OPS)
# The default host: three seed slots and the three blueprints of producers/blueprints.py's catalog
# (tests check the catalog and HostConfig agree).
DEFAULT_NUM_SLOTS = 3
DEFAULT_NUM_BLUEPRINTS = 3

GLOBAL_FEATURES: tuple[tuple[str, str], ...] = (
    ("progress", "epoch / epoch budget"),
    ("remaining", "(budget - epoch) / budget"),
    ("val_acc", "validation accuracy in [0, 1]"),
    ("val_loss", "validation cross-entropy / log(num_classes)"),
    ("train_loss", "training cross-entropy / log(num_classes)"),
    ("val_acc_delta", "10 x change of validation accuracy over the last epoch"),
    ("val_loss_delta", "10 x change of normalized validation loss over the last epoch"),
    ("plateau", "epochs since validation loss last improved by >0.5% relative, / 10"),
    ("loss_variance", "log1p(variance of minibatch training losses x 100)"),
    ("grad_norm", "log1p(global gradient norm of the host)"),
    ("lr_step", "log2(lr / initial lr) / 3: -1 .. 1 at the LR bounds"),
    ("added_params", "parameters held by seeds / host base parameters"),
    ("budget_left", "parameter budget left for new seeds / host base parameters"),
    ("live_seeds", "slots holding a seed / S"),
    ("chance_acc", "1 / num_classes of the task"),
)
LAYER_FEATURES: tuple[tuple[str, str], ...] = (
    ("position", "layer index / (L - 1)"),
    ("fan_in", "log2(fan_in) / 8"),
    ("fan_out", "log2(fan_out) / 8"),
    ("is_output", "1 for the classifier layer"),
    ("param_share", "parameters of the layer / host base parameters"),
    ("weight_rms", "root mean square of the weights"),
    ("grad_rms", "log1p(1000 x RMS gradient of the weights over the epoch)"),
    ("dead_fraction", "fraction of ReLU units never active on validation data; 0 for the output layer"),
)
SLOT_STAGES: tuple[int, ...] = tuple(range(1, 12))  # DORMANT .. TERMINATED, one-hot (UNKNOWN never occurs)
SLOT_FEATURES: tuple[tuple[str, str], ...] = (
    ("position", "slot index / (S - 1)"),
    *((f"stage_{i}", f"one-hot SeedLifecycleStage value {i}") for i in SLOT_STAGES),
    ("alpha", "blending weight of the seed in [0, 1]"),
    ("epochs_in_stage", "epochs in the current stage / 10"),
    ("seed_params", "parameters of the seed / host base parameters"),
    ("seed_acc_delta", "10 x validation accuracy change since germination (0 without a seed)"),
    ("seed_grad_norm", "log1p(1000 x RMS gradient of the seed's parameters), 0 without a seed"),
    ("blend_gain", "first-order loss drop per unit alpha: -dL/dalpha / loss, clipped to [-1, 1]"),
    ("pressure", "log1p(1000 x RMS gradient of the loss w.r.t. the activation at the slot)"),
    ("embargo_left", "embargo epochs left / embargo length"),
    ("can_germinate", "1 when the slot is dormant (germination allowed if a blueprint is affordable)"),
    ("input_width", "log2(width of what a seed here reads: the host layer's input) / 8"),
    ("affordable_blueprints", "fraction of blueprints whose cost at this slot fits the budget left"),
)
BLUEPRINT_FEATURES: tuple[tuple[str, str], ...] = (
    ("cost_min", "parameters of the blueprint at its cheapest slot / host base parameters"),
    ("cost_max", "parameters of the blueprint at its dearest slot / host base parameters"),
    ("affordable_slots", "fraction of slots where its cost fits the parameter budget left"),
    ("width_multiplier", "hidden width multiplier / 8 (0 for low-rank)"),
    ("rank", "rank / 8 (0 for residual MLPs)"),
    ("kind_residual_mlp", "one-hot kind"),
    ("kind_low_rank", "one-hot kind"),
    ("in_use", "slots currently holding this blueprint / S"),
)


def host_schema(num_slots: int, num_blueprints: int) -> GraphSchema:
    """The one schema both host envs use (see the module docstring)."""
    rels = [
        Relation("layer", "next", "layer"),
        Relation("layer", "prev", "layer"),
        Relation("layer", "hosts", "slot"),
        Relation("slot", "feeds", "layer"),
        Relation("blueprint", "fits", "slot"),
        Relation("slot", "can_grow", "blueprint"),
        Relation("blueprint", "planted_in", "slot"),
        Relation("slot", "grows", "blueprint"),
    ]
    for other in ("layer", "slot", "blueprint"):
        rels.append(Relation("global", "has", other))
        rels.append(Relation(other, "part_of", "global"))
    return GraphSchema(
        name=f"tamiyo-host-s{num_slots}-b{num_blueprints}",
        node_types=(
            NodeType("global", len(GLOBAL_FEATURES)),
            NodeType("layer", len(LAYER_FEATURES)),
            NodeType("slot", len(SLOT_FEATURES)),
            NodeType("blueprint", len(BLUEPRINT_FEATURES)),
        ),
        relations=tuple(rels),
        action_heads=(
            ActionHead("op", NUM_OPS),
            ActionHead("slot", num_slots, "slot"),
            ActionHead("blueprint", num_blueprints, "blueprint"),
        ),
    )


def static_edges(num_slots: int, num_blueprints: int) -> dict[tuple[str, str, str], np.ndarray]:
    """Every relation whose edges do not change during an episode (all but planted_in/grows)."""
    n_layers = num_slots + 1
    layers = np.arange(n_layers - 1)
    slots = np.arange(num_slots)
    bp_grid, slot_grid = np.meshgrid(np.arange(num_blueprints), slots, indexing="ij")
    bp_all, slot_all = bp_grid.ravel(), slot_grid.ravel()
    edges = {
        ("layer", "next", "layer"): np.stack([layers, layers + 1]),
        ("layer", "prev", "layer"): np.stack([layers + 1, layers]),
        ("layer", "hosts", "slot"): np.stack([slots, slots]),
        ("slot", "feeds", "layer"): np.stack([slots, slots + 1]),
        ("blueprint", "fits", "slot"): np.stack([bp_all, slot_all]),
        ("slot", "can_grow", "blueprint"): np.stack([slot_all, bp_all]),
    }
    for other, n in (("layer", n_layers), ("slot", num_slots), ("blueprint", num_blueprints)):
        idx = np.arange(n)
        edges[("global", "has", other)] = np.stack([np.zeros(n, np.int64), idx])
        edges[(other, "part_of", "global")] = np.stack([idx, np.zeros(n, np.int64)])
    return {k: np.ascontiguousarray(v, dtype=np.int32) for k, v in edges.items()}


def joint_index(op: int, slot: int, blueprint: int, num_slots: int, num_blueprints: int) -> int:
    return (op * num_slots + slot) * num_blueprints + blueprint


def unravel_action(index: int, num_slots: int, num_blueprints: int) -> np.ndarray:
    return np.array(np.unravel_index(index, (NUM_OPS, num_slots, num_blueprints)), dtype=np.int64)
