"""Sum-tree over item priorities (plus their minimum), vectorised with numpy.

Layout: a binary heap in one flat float64 array of ``2L`` nodes (``L`` = capacity
rounded up to a power of two).  Node ``i`` has children ``2i`` and ``2i+1``, slot
``j`` is leaf ``L + j``.  Empty slots hold 0.  The tree is kept from the leaves up
to the *jump level* (2,048 nodes, or the leaves themselves for small capacities);
above it a cumulative sum over the jump level replaces the top 11 binary levels,
and its last entry is the total.

Why it is fast without per-item Python loops (numpy call overhead, not arithmetic,
dominates at batch sizes of 64-128):

- Writes only touch leaves and mark them dirty.  Parents are recomputed lazily,
  once, on the next read, for the union of everything written since: one
  vectorised pass per tree level.  A learner iteration (insert, update, sample)
  therefore pays for one propagation instead of two.
- Sampling jumps over the top of the tree: the cumulative sum over the jump
  level and ``searchsorted`` pick the subtree for every draw at once, and the
  draws then descend the few remaining binary levels together (6 at 100,000).

Every parent is *recomputed* as ``left + right`` (never patched with a delta), and
the jump-level prefix sums are recomputed whole, so the structure is a pure
function of its leaves: sums cannot drift after millions of updates, and a rebuild
from saved leaves gives bit-identical nodes and totals.

The minimum positive leaf (for importance-weight normalisation) comes from a
two-level min structure: leaves with +inf for empty slots, and one minimum per
jump-level block, refreshed for the touched blocks during propagation; the global
minimum is then one reduction over 2,048 block minima.

Not thread-safe on its own (reads propagate pending writes): PrioritizedReplay
holds its lock around every call.
"""

from __future__ import annotations

import numpy as np

# Sampling does a flat cumulative sum over this many nodes (or all leaves if fewer),
# then descends the binary levels below it.
_JUMP_LEVEL_WIDTH = 2048
# Propagate eagerly once this many leaf writes are pending, so a writer that never
# reads keeps bounded memory.
_MAX_PENDING_WRITES = 8192


class SumMinTree:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.depth = max(0, (self.capacity - 1).bit_length())
        self._num_leaves = 1 << self.depth
        self._sum = np.zeros(2 * self._num_leaves, dtype=np.float64)
        # Node i of this view is the (left, right) child pair of node i: one gather reads both.
        self._pairs = self._sum.view(np.complex128)
        self._min_leaves = np.full(self._num_leaves, np.inf, dtype=np.float64)
        self._dirty: list[np.ndarray] = []  # leaf slots written since the last propagation
        self._pending = 0
        self._min: float | None = np.inf  # None: recompute on next read
        self._jump_width = min(_JUMP_LEVEL_WIDTH, self._num_leaves)
        # Leaves grouped by jump-level node: row b holds the leaves under jump node b.
        self._min_blocks = self._min_leaves.reshape(self._jump_width, -1)
        self._block_min = np.full(self._jump_width, np.inf, dtype=np.float64)
        self._jump_cumulative: np.ndarray | None = None  # cached prefix sums over the jump level

    # ------------------------------------------------------------------ reads
    @property
    def total(self) -> float:
        self._flush()
        return float(self._jump_prefix_sums()[-1])

    @property
    def min(self) -> float:
        """Smallest positive leaf (``inf`` when the tree is empty)."""
        self._flush()
        if self._min is None:
            self._min = float(self._block_min.min())
        return self._min

    def leaves(self) -> np.ndarray:
        """A copy of the ``capacity`` leaf values."""
        return self._sum[self._num_leaves : self._num_leaves + self.capacity].copy()

    def get(self, indices: np.ndarray) -> np.ndarray:
        return self._sum[np.asarray(indices, dtype=np.int64) + self._num_leaves]

    def nodes(self) -> np.ndarray:
        """Every node, propagated (tests: bit-identity of incremental updates and rebuilds)."""
        self._flush()
        return self._sum.copy()

    # ----------------------------------------------------------------- writes
    def set(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``indices`` to ``values`` (>= 0, finite); the last write wins on repeats."""
        indices = np.asarray(indices, dtype=np.int64).ravel()
        values = np.asarray(values, dtype=np.float64).ravel()
        if indices.size == 0:
            return
        if values.size == 1 and indices.size > 1:
            values = np.full(indices.size, values[0])
        if values.shape != indices.shape:
            raise ValueError(f"{indices.size} indices but {values.size} values")
        if indices.min() < 0 or indices.max() >= self.capacity:
            raise IndexError("leaf index out of range")
        # min >= 0 fails on NaN, and with min >= 0 a finite max means all are finite.
        if not (values.min() >= 0 and np.isfinite(values.max())):
            raise ValueError("tree values must be finite and >= 0")
        self.set_unchecked(indices, values)

    def set_unchecked(self, indices: np.ndarray, values: np.ndarray) -> None:
        """``set`` for callers that already guarantee int64 indices in range and finite values >= 0."""
        if indices.size == 0:
            return
        indices, values = _last_write_wins(indices, values)
        self._sum[indices + self._num_leaves] = values
        self._min_leaves[indices] = np.where(values > 0, values, np.inf)
        self._dirty.append(indices)
        self._pending += indices.size
        self._min = None
        self._jump_cumulative = None
        if self._pending > _MAX_PENDING_WRITES:
            self._flush()

    def rebuild(self, leaf_values: np.ndarray) -> None:
        """Replace all leaves at once and recompute every parent (restore, bulk load)."""
        leaf_values = np.asarray(leaf_values, dtype=np.float64)
        if leaf_values.shape != (self.capacity,):
            raise ValueError(f"expected {self.capacity} leaves, got {leaf_values.shape}")
        if not np.isfinite(leaf_values).all() or (leaf_values < 0).any():
            raise ValueError("tree values must be finite and >= 0")
        lo = self._num_leaves
        self._sum[:] = 0.0
        self._sum[lo : lo + self.capacity] = leaf_values
        self._min_leaves[:] = np.where(self._sum[lo:] > 0, self._sum[lo:], np.inf)
        self._block_min[:] = self._min_blocks.min(axis=1)
        s, width = self._sum, lo
        while width > self._jump_width:  # the same left + right as _flush: identical bits
            half = width >> 1
            np.add(s[width : 2 * width : 2], s[width + 1 : 2 * width : 2], out=s[half:width])
            width = half
        self._dirty.clear()
        self._pending = 0
        self._min = None
        self._jump_cumulative = None

    def _flush(self) -> None:
        """Recompute the ancestors (up to the jump level) of every leaf written since the last read."""
        if not self._dirty:
            return
        nodes = np.concatenate(self._dirty) + self._num_leaves
        self._dirty.clear()
        self._pending = 0
        s, pairs = self._sum, self._pairs
        width = self._num_leaves
        while width > self._jump_width:
            nodes >>= 1
            children = pairs[nodes]  # (left, right) as one complex gather
            s[nodes] = children.real + children.imag  # repeats recompute the same value: harmless
            width >>= 1
        blocks = nodes - self._jump_width
        self._block_min[blocks] = self._min_blocks[blocks].min(axis=1)

    # --------------------------------------------------------------- sampling
    def find_prefix(self, mass: np.ndarray) -> np.ndarray:
        """Leaf (slot) holding each prefix ``mass`` in ``[0, total)``, vectorised over the batch.

        Never returns an empty slot, even under float round-off:

        - The jump picks, with ``searchsorted(side="right")``, the first node whose
          inclusive prefix sum exceeds the mass; a node with zero mass has the same
          prefix sum as its left neighbour, so it is never the first to exceed it.
          The mass is clamped strictly below the last prefix sum, so some node does.
        - Below the jump a draw whose mass, through round-off, reaches past a node's
          positive leaves could still end on an empty slot.  Such (rare) draws are
          detected and re-descended from their (positive) jump node with a rule
          that never enters a zero subtree.
        """
        self._flush()
        cumulative = self._jump_prefix_sums()
        if not cumulative[-1] > 0:
            raise ValueError("cannot sample from an empty tree")
        mass = np.array(mass, dtype=np.float64, copy=True).ravel()
        jump_level = self._jump_width
        np.minimum(mass, np.nextafter(cumulative[-1], 0.0), out=mass)
        first = np.searchsorted(cumulative, mass, side="right")
        mass -= np.where(first > 0, cumulative[first - 1], 0.0)
        nodes = first + jump_level
        start_nodes, start_mass = nodes.copy(), mass.copy()
        s = self._sum
        while jump_level < self._num_leaves:  # plain binary descent below the jump level
            nodes <<= 1
            left = s[nodes]
            go_right = mass >= left
            np.subtract(mass, left, out=mass, where=go_right)
            nodes += go_right
            jump_level <<= 1
        slots = nodes - self._num_leaves
        bad = ~(s[nodes] > 0)
        if bad.any():
            slots[bad] = self._safe_descent(start_nodes[bad], start_mass[bad])
        return slots

    def sample_stratified(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """``batch_size`` slots, one uniform draw in each of ``batch_size`` equal strata of the mass."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        total = self.total
        # Stratum k is [k, k+1) * total / B; the top edge is excluded, and find_prefix
        # clamps the round-off case where (k + u) * total / B lands on total itself.
        mass = (np.arange(batch_size, dtype=np.float64) + rng.random(batch_size)) * (total / batch_size)
        return self.find_prefix(mass)

    def _jump_prefix_sums(self) -> np.ndarray:
        if self._jump_cumulative is None:
            width = self._jump_width
            self._jump_cumulative = np.cumsum(self._sum[width : 2 * width])
        return self._jump_cumulative

    def _safe_descent(self, nodes: np.ndarray, mass: np.ndarray) -> np.ndarray:
        """Descent from positive ``nodes`` to leaves that only ever enters subtrees holding mass."""
        s = self._sum
        mass = mass.copy()
        while nodes.size and nodes[0] < self._num_leaves:  # all start on one level
            left = nodes << 1
            left_sum = s[left]
            go_right = ((mass >= left_sum) & (s[left + 1] > 0)) | ~(left_sum > 0)
            mass = np.where(go_right, mass - left_sum, mass)
            nodes = left + go_right
        return nodes - self._num_leaves


def _last_write_wins(indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop earlier repeats of an index (numpy leaves the winner of repeated fancy writes unspecified)."""
    if indices.size < 2:
        return indices, values
    ordered = np.sort(indices)
    if not (ordered[1:] == ordered[:-1]).any():  # the common case: a cheap check, no unique()
        return indices, values
    unique, first_in_reversed = np.unique(indices[::-1], return_index=True)
    return unique, values[::-1][first_in_reversed]
