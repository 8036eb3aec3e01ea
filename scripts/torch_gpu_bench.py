"""PyTorch peer of `moonbert bench train --device cuda`: the DistilBERT training step on a GPU.

The model is ../shared/peer/distilbert_torch.py's DistilBertForSequenceClassification (Hugging
Face's names and semantics, no `transformers` needed), built from the full-size config (dim 768,
6 layers, 12 heads, hidden 3072, vocab 30522, 6 labels; random init), torch.optim.AdamW (lr 5e-5,
weight decay 0.01 except biases and LayerNorm weights), clip_grad_norm_(1.0), batch 64 x length 64
with a padding pattern like the moonbert benchmark's (lengths 8..64, pad id 0), train mode
(dropout on), the loss and gradient norm read back every step as moonbert's trainer does.

Modes: eager fp32 (TF32 off), eager tf32 (TF32 matmuls), eager bf16 (torch.autocast bfloat16:
bf16 operands, fp32 master weights and loss), and the same three under torch.compile (the model's
forward compiled; a mode that fails to compile reports its error instead of figures).

  python3 scripts/torch_gpu_bench.py [--peer ../shared/peer] [--steps 20 --warmup 3] [--no-compile]
                                     [--out torch_gpu.json]

Prints one JSON object: per mode seconds_per_step, sequences_per_s, tokens_per_s, tflop_per_s
(moonbert's cost model: 3 x the forward's matrix-product flops) and peak_device_mb
(torch.cuda.max_memory_allocated).
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--peer", default=os.environ.get("MOONBERT_SHARED", "../shared") + "/peer")
ap.add_argument("--steps", type=int, default=20)
ap.add_argument("--warmup", type=int, default=3)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--length", type=int, default=64)
ap.add_argument("--no-compile", action="store_true")
ap.add_argument("--out")
args = ap.parse_args()
assert torch.cuda.is_available(), "no CUDA device visible to PyTorch"
sys.path.insert(0, args.peer)
import distilbert_torch as peer  # noqa: E402

dev = torch.device("cuda")
B, T, V, D, Fh, NL, L = args.batch, args.length, 30522, 768, 3072, 6, 6


def make_batch():
    g = torch.Generator().manual_seed(1)
    lens = [T] + [max(8, int(8 + torch.rand(1, generator=g).item() * (T - 8))) for _ in range(B - 1)]
    ids = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(lens):
        for t in range(n):
            ids[b, t] = 101 if t == 0 else (102 if t == n - 1 else 1000 + ((b + 1) * 7919 + (t + 1) * 104729) % (V - 1000))
            mask[b, t] = 1
    labels = torch.tensor([b % L for b in range(B)])
    return ids.to(dev), mask.to(dev), labels.to(dev)


def flops_per_step():
    enc = NL * (2.0 * B * T * (4 * D * D + 2 * D * Fh) + 4.0 * B * T * T * D)
    head = 2.0 * B * (D * D + D * L)
    return 3.0 * (enc + head)


def run(precision, compiled):
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.manual_seed(42)
    cfg = peer.Config(vocab_size=V, dim=D, n_layers=NL, n_heads=12, hidden_dim=Fh, num_labels=L)
    model = peer.DistilBertForSequenceClassification(cfg).to(dev).train()
    named = list(model.named_parameters())
    nd = lambda n: n.endswith(".bias") or "LayerNorm" in n or "layer_norm" in n  # noqa: E731
    opt = torch.optim.AdamW([{"params": [p for n, p in named if not nd(n)], "weight_decay": 0.01},
                             {"params": [p for n, p in named if nd(n)], "weight_decay": 0.0}], lr=5e-5)
    fwd = torch.compile(model) if compiled else model
    ids, mask, labels = make_batch()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = fwd(ids, mask)
        loss = F.cross_entropy(logits.float(), labels)  # loss in fp32
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item(), norm.item()  # metrics out, as moonbert reads them each step

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss, _ = step()
    torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / args.steps
    return dict(seconds_per_step=sec, steps_per_s=1 / sec, sequences_per_s=B / sec, tokens_per_s=B * T / sec,
                tflop_per_s=flops_per_step() / sec / 1e12,
                peak_device_mb=torch.cuda.max_memory_allocated() / 1e6, last_loss=loss)


result = dict(device=torch.cuda.get_device_name(0), torch=torch.__version__, batch=B, length=T, steps=args.steps,
              model="distilbert_torch.DistilBertForSequenceClassification (" + args.peer + ")")
for compiled in ([False] if args.no_compile else [False, True]):
    for prec in ("fp32", "tf32", "bf16"):
        key = ("compile_" if compiled else "eager_") + prec
        try:
            result[key] = run(prec, compiled)
        except Exception as e:  # torch.compile may not work on this machine: say why, go on
            result[key] = dict(error=f"{type(e).__name__}: {e}"[:500])
        print(key, json.dumps(result[key]), file=sys.stderr, flush=True)
text = json.dumps(result, indent=2)
print(text)
if args.out:
    with open(args.out, "w") as f:
        f.write(text + "\n")
