"""Leyline codec benchmark: prints one JSON object.

python bench/contracts.py [--iterations N]

- system_state_packet_bytes: the seed document's example packet, serialized.
- encode/decode_us_p50/p95: wrapping that packet in an EventEnvelope (event id,
  clock, sequence) and fully decoding it back (all checks on), per call.
- packet_serialize/parse_us_p50: the bare protobuf calls, as the floor.
- trajectory_*: a T=20 host-sim unroll (random controller), as actors publish
  it: compressed/raw bytes and MB/s; trajectory_unroll_decode_us_min: `unroll_from_proto` alone (arrays
  out of the parsed message, every structural check), what the replay and the learner pay per item
  (before the joined-buffer decoder of issue 11: ~210 us here, its graphs ~180 us).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from tamiyo.contracts import codec
from tamiyo.contracts.examples import seed_document_state_packet
from tamiyo.contracts.packing import unroll_from_proto, unroll_to_proto
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.producers.sample_unrolls import host_sim_unrolls


def _percentiles_us(fn, iterations: int) -> tuple[float, float]:
    samples = np.empty(iterations)
    clock = time.perf_counter_ns
    for i in range(iterations):
        t0 = clock()
        fn()
        samples[i] = clock() - t0
    return float(np.percentile(samples, 50) / 1e3), float(np.percentile(samples, 95) / 1e3)


def _timed_once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def realistic_unroll():
    """A T=20 host-sim unroll, as an actor publishes it."""
    return host_sim_unrolls(1, length=20, seed=0)[0], "host-sim"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=20000)
    args = ap.parse_args()

    packet = seed_document_state_packet()
    raw = packet.SerializeToString()
    enc = codec.EnvelopeEncoder("bench", producer_id="bench-0")
    record = enc.encode(packet)
    for _ in range(2000):  # warm-up
        codec.decode_envelope(enc.encode(packet))
    encode_p50, encode_p95 = _percentiles_us(lambda: enc.encode(packet), args.iterations)
    decode_p50, decode_p95 = _percentiles_us(lambda: codec.decode_envelope(record), args.iterations)
    ser_p50, _ = _percentiles_us(packet.SerializeToString, args.iterations)
    parse_p50, _ = _percentiles_us(lambda: pb.SystemStatePacket.FromString(raw), args.iterations)

    unroll, source = realistic_unroll()
    traj = unroll_to_proto(unroll)
    traj_raw = traj.SerializeToString()
    arrays_bytes = unroll.graphs.nbytes() + sum(
        a.nbytes for a in (unroll.actions, unroll.action_masks, unroll.behaviour_log_probs, unroll.rewards)
    )
    traj_record = codec.encode_envelope(traj, source="bench", producer_id="b", sequence=0)
    reps = 200
    t0 = time.perf_counter()
    for _ in range(reps):
        codec.encode_envelope(unroll_to_proto(unroll), source="bench", producer_id="b", sequence=0)
    encode_s = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    for _ in range(reps):
        codec.decode_envelope(traj_record)
    decode_s = (time.perf_counter() - t0) / reps
    parsed = codec.decode_envelope(traj_record).payload
    unroll_decode_s = min(_timed_once(lambda: unroll_from_proto(parsed)) for _ in range(reps))

    print(
        json.dumps(
            {
                "system_state_packet_bytes": len(raw),
                "system_state_envelope_bytes": len(record),
                "encode_us_p50": round(encode_p50, 2),
                "encode_us_p95": round(encode_p95, 2),
                "decode_us_p50": round(decode_p50, 2),
                "decode_us_p95": round(decode_p95, 2),
                "packet_serialize_us_p50": round(ser_p50, 2),
                "packet_parse_us_p50": round(parse_p50, 2),
                "trajectory_source": source,
                "trajectory_raw_bytes": len(traj_raw),
                "trajectory_record_bytes": len(traj_record),
                "trajectory_compression_ratio": round(len(traj_record) / len(traj_raw), 4),
                "trajectory_encode_mb_s": round(arrays_bytes / encode_s / 1e6, 1),
                "trajectory_decode_mb_s": round(arrays_bytes / decode_s / 1e6, 1),
                "trajectory_unroll_decode_us_min": round(unroll_decode_s * 1e6, 1),
                "budget_packet_bytes": 280,
                "budget_codec_us_p50": 10,
            }
        )
    )


if __name__ == "__main__":
    main()
