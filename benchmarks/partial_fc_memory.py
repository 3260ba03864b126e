"""Memory per rank of sharded Partial FC at WebFace42M scale (issue 14, item 3).

K = 2,000,000 classes, D = 512, fp32, the trainer's sampling rate (``TrainConfig.partial_fc_rate``,
0.3) and ``--per-rank-batch`` images per rank (global batch N = b x W). For each world size W the
arithmetic of ``cqa_core.training.partial_fc``:

* L = ceil(K / W) centres per rank; weight, its dense gradient and SGD's momentum buffer are
  L x D x 4 bytes each (``memory_per_rank`` counts those three);
* S = min(L, max(ceil(rate x L), N)) centres sampled per rank per step;
* the rank scores the whole global batch against them: (N, S) fp32 logits (the all-to-all then
  hands back (B, W x S), the same count), plus the gathered embeddings (N, D) and the sampled
  centres ``weight[index]`` (S, D).

For the world sizes in ``--measure`` one rank's real step is also run on the CPU in a fresh
process (rank 0's shard from ``create_partial_fc``; ``sample`` + ``scores`` on a random global
batch, which is what a rank computes between the all-gather and the all-to-all; a cross-entropy
over its own shard's labels; backward; one SGD step with momentum 0.9), and the tensors' ``nbytes``
and the process's peak RSS over the step are read.

    .venv/bin/python benchmarks/partial_fc_memory.py [--classes 2000000] [--measure 8 64]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

MB = 1e6


def rss_peak() -> int:
    """Peak resident set size of this process so far, bytes (Linux: ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def arithmetic(k: int, d: int, w: int, b: int, rate: float) -> dict:
    from cqa_core.training.partial_fc import memory_per_rank, shard_range

    rows = shard_range(k, 0, w)[1]
    n = b * w
    s = min(rows, max(math.ceil(rate * rows), n))
    return {"world_size": w, "rows": rows, "global_batch": n, "sampled": s,
            "centres": 4 * rows * d, "grad": 4 * rows * d, "momentum": 4 * rows * d,
            "memory_per_rank": memory_per_rank(k, d, w), "logits": 4 * n * s,
            "gathered_embeddings": 4 * n * d, "sampled_centres": 4 * s * d}


def measure(k: int, d: int, w: int, b: int, rate: float, threads: int) -> dict:
    """One rank's step, in this process (call it in a fresh one for a clean peak RSS)."""
    import torch
    import torch.nn.functional as F

    from cqa_core.training.partial_fc import create_partial_fc

    torch.set_num_threads(threads)
    base = rss_now()
    t0 = time.perf_counter()
    pfc = create_partial_fc("cosface", d, k, 64.0, 0.35, rate, seed=0, rank=0, world_size=w)
    opt = torch.optim.SGD(pfc.parameters(), lr=0.1, momentum=0.9)
    after_alloc = rss_now()
    n = b * w
    g = torch.Generator().manual_seed(0)
    all_labels = torch.randint(0, k, (n,), generator=g)  # (N,) the global batch
    all_labels[:b] = torch.randint(0, pfc.weight.shape[0], (b,), generator=g)  # rank 0's rows: own shard
    emb = torch.randn(n, d, generator=g).requires_grad_(True)  # (N, D) after the all-gather
    pfc.step = 1
    index, target = pfc.sample(all_labels, all_labels)  # (S,), (N,)
    logits = pfc.scores(emb, index, target)  # (N, S)
    loss = F.cross_entropy(logits, target, ignore_index=-1)
    loss.backward()
    opt.step()
    mom = opt.state[pfc.weight]["momentum_buffer"]
    return {"world_size": w, "rows": pfc.weight.shape[0], "sampled": int(index.numel()),
            "centres": pfc.weight.nbytes, "grad": pfc.weight.grad.nbytes, "momentum": mom.nbytes,
            "grad_is_dense": not pfc.weight.grad.is_sparse, "logits": logits.nbytes,
            "logits_shape": list(logits.shape), "gathered_embeddings": emb.nbytes,
            "rss_after_alloc": after_alloc - base, "rss_peak_over_step": rss_peak() - base,
            "seconds": time.perf_counter() - t0, "threads": threads}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=2_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--rate", type=float, default=None, help="default: TrainConfig.partial_fc_rate")
    ap.add_argument("--per-rank-batch", type=int, default=128)
    ap.add_argument("--world-sizes", type=int, nargs="+", default=[1, 2, 8, 16, 64, 128])
    ap.add_argument("--measure", type=int, nargs="*", default=[8, 64], help="world sizes to run a real rank step for")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--_one", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.rate is None:
        from cqa_core.config import TrainConfig

        a.rate = TrainConfig().partial_fc_rate
    if a._one is not None:
        print(json.dumps(measure(a.classes, a.dim, a._one, a.per_rank_batch, a.rate, a.threads)))
        return
    rows = [arithmetic(a.classes, a.dim, w, a.per_rank_batch, a.rate) for w in a.world_sizes]
    print(f"K = {a.classes:,}, D = {a.dim}, fp32, rate = {a.rate}, {a.per_rank_batch} images per rank")
    print("| W | centres/rank L | sampled S | global batch N | centres | + grad + momentum "
          "(memory_per_rank) | logits (N, S) | total |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        total = r["memory_per_rank"] + r["logits"] + r["gathered_embeddings"] + r["sampled_centres"]
        print(f"| {r['world_size']} | {r['rows']:,} | {r['sampled']:,} | {r['global_batch']:,} "
              f"| {r['centres'] / MB:,.1f} MB | {r['memory_per_rank'] / MB:,.1f} MB | {r['logits'] / MB:,.1f} MB "
              f"| {total / MB:,.1f} MB |")
    measured = []
    for w in a.measure:
        cmd = [sys.executable, __file__, "--classes", str(a.classes), "--dim", str(a.dim), "--rate", str(a.rate),
               "--per-rank-batch", str(a.per_rank_batch), "--threads", str(a.threads), "--_one", str(w)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        m = json.loads(out.strip().splitlines()[-1])
        ref = next((r for r in rows if r["world_size"] == w), arithmetic(a.classes, a.dim, w, a.per_rank_batch, a.rate))
        for key in ("rows", "sampled", "centres", "grad", "momentum", "logits", "gathered_embeddings"):
            assert m[key] == ref[key], (w, key, m[key], ref[key])
        measured.append(m)
        print(f"measured W={w}: weight {m['centres'] / MB:.1f} MB, grad {m['grad'] / MB:.1f} MB (dense: "
              f"{m['grad_is_dense']}), momentum {m['momentum'] / MB:.1f} MB, logits {tuple(m['logits_shape'])} "
              f"{m['logits'] / MB:.1f} MB (all equal to the arithmetic); RSS after allocating the shard "
              f"+{m['rss_after_alloc'] / MB:.1f} MB, peak over the step +{m['rss_peak_over_step'] / MB:.1f} MB; "
              f"{m['seconds']:.1f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"classes": a.classes, "dim": a.dim, "rate": a.rate, "per_rank_batch": a.per_rank_batch,
                       "arithmetic": rows, "measured": measured}, f, indent=1)


if __name__ == "__main__":
    main()
