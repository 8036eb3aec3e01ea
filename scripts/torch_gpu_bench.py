"""PyTorch peer of `moonbert bench train_cuda`: the DistilBERT training step on a GPU.

transformers.DistilBertForSequenceClassification built from a config (dim 768, 6 layers,
12 heads, hidden 3072, vocab 30522, 6 labels; random init, no download), torch.optim.AdamW
(lr 5e-5, weight decay 0.01 except biases and LayerNorm weights), clip_grad_norm_(1.0),
batch 64 x length 64 with a padding pattern like the moonbert benchmark's (lengths
8..64, pad id 0), train mode (dropout on). Precisions: fp32 (TF32 off), tf32 (TF32 matmuls),
bf16 (torch.autocast bfloat16: bf16 operands, fp32 master weights and loss).

  python3 scripts/torch_gpu_bench.py [--steps 20 --warmup 3 --out torch_gpu.json]

Prints one JSON object: per precision seconds_per_step, sequences_per_s, tokens_per_s,
tflop_per_s (same cost model as moonbert: 3 x forward matmul flops) and
peak_device_mb (torch.cuda.max_memory_allocated).
"""
import argparse
import json
import time

import torch
from transformers import DistilBertConfig, DistilBertForSequenceClassification

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=20)
ap.add_argument("--warmup", type=int, default=3)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--length", type=int, default=64)
ap.add_argument("--out")
args = ap.parse_args()
assert torch.cuda.is_available(), "no CUDA device visible to PyTorch"
dev = torch.device("cuda")
B, T, V, D, F, NL, L = args.batch, args.length, 30522, 768, 3072, 6, 6


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
    enc = NL * (2.0 * B * T * (4 * D * D + 2 * D * F) + 4.0 * B * T * T * D)
    head = 2.0 * B * (D * D + D * L)
    return 3.0 * (enc + head)


def run(precision):
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.manual_seed(42)
    cfg = DistilBertConfig(vocab_size=V, dim=D, n_layers=NL, n_heads=12, hidden_dim=F, num_labels=L)
    model = DistilBertForSequenceClassification(cfg).to(dev).train()
    decay = [p for n, p in model.named_parameters() if not (n.endswith(".bias") or "LayerNorm" in n or "layer_norm" in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith(".bias") or "LayerNorm" in n or "layer_norm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=5e-5)
    ids, mask, labels = make_batch()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)  # loss in fp32
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


result = dict(device=torch.cuda.get_device_name(0), torch=torch.__version__, batch=B, length=T, steps=args.steps)
for prec in ("fp32", "tf32", "bf16"):
    result[prec] = run(prec)
text = json.dumps(result, indent=2)
print(text)
if args.out:
    with open(args.out, "w") as f:
        f.write(text + "\n")
