"""tamiyo.policy: what actors, serving and the learner share — the network and how it acts.

- `model`: `TamiyoGNN` (built from a `GraphSchema`) and its `ModelConfig`;
- `batching`: `collate`, packed graphs -> one batched graph for message passing;
- `distribution`: the masked factored categorical over the action heads;
- `protocol`: the `Policy` / `PolicyStep` interface; `model_policy.ModelPolicy` and
  `swappable.SwappablePolicy` implement it;
- `snapshot` (safetensors weights + JSON config, no pickle), `signing` (signed `PolicySnapshot`s) and
  `verification` (the checks every reader of the policy topic runs before parsing weights).

Depends on `tamiyo.contracts` only.
"""
