"""Seeding many host envs' tasks at once: numpy's `SeedSequence` and `PCG64` seeding as array code.

`HostEnv.reset()` without a seed does, per env::

    task_seed = int(stream.spawn(1)[0].generate_state(1)[0])    # stream = SeedSequence([split code, seed])
    rng = np.random.default_rng([split code, task_seed])

which costs ~60 µs of Python-level work inside numpy per env (half of a task reset in `VecHostSim`).  Here
the same arithmetic runs over uint32 arrays for all the envs that reset: `SeedSequence`'s entropy mixing
and `generate_state` (O'Neill's seed_seq hash; numpy/random/bit_generator.pyx), then PCG64's seeding
(``pcg64_set_seed``: two steps of the 128-bit LCG, in Python ints), and every env's `Generator` gets its
new state in place.  The hash constants advance with the number of calls only, so they are plain ints
shared by all envs.  Bit-identical to numpy (tests/producers/test_vec_host_sim.py checks it against numpy
itself); a stream whose entropy numpy would spread over more than 4 words falls back to numpy's spawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_MASK32 = 0xFFFFFFFF
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = np.uint32(0xCA01F9DD), np.uint32(0x4973F715)
_POOL = 4  # SeedSequence's default pool size
_PCG_MULT = (2549297995355413924 << 64) + 4865540595714422341  # PCG_DEFAULT_MULTIPLIER_128
_MASK128 = (1 << 128) - 1


def _words(n: int) -> list[int]:
    """numpy's _int_to_uint32_array: the uint32 words of a non-negative int, lowest first ([0] for 0)."""
    out = [n & _MASK32] if n == 0 else []
    while n > 0:
        out.append(n & _MASK32)
        n >>= 32
    return out


class _Hash:
    """SeedSequence's hashmix / mix over uint32 arrays; the running constant is one int for all rows."""

    def __init__(self, init: int, mult: int) -> None:
        self.const, self.mult = init, mult

    def __call__(self, value: np.ndarray) -> np.ndarray:
        value = value ^ np.uint32(self.const)
        self.const = (self.const * self.mult) & _MASK32
        value = value * np.uint32(self.const)
        return value ^ (value >> np.uint32(16))


def _mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    result: np.ndarray = x * _MIX_L - y * _MIX_R
    return result ^ (result >> np.uint32(16))


def mix_entropy(entropy: Sequence[np.ndarray]) -> list[np.ndarray]:
    """SeedSequence.mix_entropy: the 4-word pools of M sequences from their entropy words (each uint32 [M])."""
    hashmix = _Hash(_INIT_A, _MULT_A)
    zero = np.zeros_like(entropy[0])
    pool = [hashmix(entropy[i] if i < len(entropy) else zero) for i in range(_POOL)]
    for src in range(_POOL):
        for dst in range(_POOL):
            if src != dst:
                pool[dst] = _mix(pool[dst], hashmix(pool[src]))
    for word in entropy[_POOL:]:
        for dst in range(_POOL):
            pool[dst] = _mix(pool[dst], hashmix(word))
    return pool


def generate_state(pool: Sequence[np.ndarray], n_words: int) -> list[np.ndarray]:
    """SeedSequence.generate_state(n_words) (uint32 words) of M sequences at once."""
    hashmix = _Hash(_INIT_B, _MULT_B)
    out = []
    for i in range(n_words):
        value = pool[i % _POOL] ^ np.uint32(hashmix.const)
        hashmix.const = (hashmix.const * _MULT_B) & _MASK32
        value = value * np.uint32(hashmix.const)
        out.append(value ^ (value >> np.uint32(16)))
    return out


class TaskSeedStreams:
    """``SeedSequence([code, seed])`` per env; `spawn` gives what ``int(s.spawn(1)[0].generate_state(1)[0])`` would."""

    def __init__(self, code: int, seeds: Sequence[int]) -> None:
        self._numpy = [np.random.SeedSequence([code, int(s)]) for s in seeds]
        run = [_words(code) + _words(int(s)) for s in seeds]  # the streams' run entropy
        # Spawned children pad the run entropy to the pool size and append the spawn key (the child's index).
        self._fast = np.array([len(r) <= _POOL for r in run])
        self._run = np.array([r + [0] * (_POOL - len(r)) if len(r) <= _POOL else [0] * _POOL for r in run], np.uint32)
        self._spawned = np.zeros(len(seeds), dtype=np.int64)

    def spawn(self, rows: np.ndarray) -> list[int]:
        """The next task seed of each env in ``rows`` (each stream spawns one child)."""
        out = np.zeros(rows.size, dtype=np.int64)
        fast = self._fast[rows]
        for j in np.flatnonzero(~fast).tolist():
            out[j] = int(self._numpy[rows[j]].spawn(1)[0].generate_state(1)[0])
        f = rows[fast]
        if f.size:
            key = self._spawned[f].astype(np.uint32)
            pool = mix_entropy([*self._run[f].T, key])
            out[fast] = generate_state(pool, 1)[0]
            self._spawned[f] += 1
        return out.tolist()


def seed_generators(
    generators: list[np.random.Generator], rows: Sequence[int], code: int, seeds: Sequence[int]
) -> None:
    """``generators[rows[j]]`` := ``np.random.default_rng([code, seeds[j]])``, in place (seeds < 2**32)."""
    if not rows:
        return
    words = np.array(seeds, dtype=np.uint32)
    assert words.tolist() == list(seeds), "one-word seeds only"
    pool = mix_entropy([np.full(len(rows), code, dtype=np.uint32), words])  # [code, seed]: one word each
    w = [x.astype(np.uint64).tolist() for x in generate_state(pool, 8)]  # generate_state(4, uint64), as words
    for j, i in enumerate(rows):
        v = [w[2 * k][j] | (w[2 * k + 1][j] << 32) for k in range(4)]  # little-endian uint32 pairs
        initstate, initseq = (v[0] << 64) | v[1], (v[2] << 64) | v[3]
        inc = ((initseq << 1) | 1) & _MASK128  # pcg_setseq_128_srandom_r: state 0, step, add, step
        state = ((inc + initstate) * _PCG_MULT + inc) & _MASK128
        generators[i].bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": state, "inc": inc},
            "has_uint32": 0,
            "uinteger": 0,
        }
