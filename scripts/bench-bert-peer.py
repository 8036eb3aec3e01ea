#!/usr/bin/env python3
"""scripts/bench-bert-peer.py: the PyTorch side of bench-compare's BERT-base row.

The same work as `moonbert bench train_bert`: BertForSequenceClassification from
../shared/peer/bert_torch.py (Hugging Face names and semantics) at bert-base size, random init,
batch 32 padded to length 64 (lengths 8..64), forward + cross-entropy + backward + AdamW step in
train mode. Prints JSON {"seconds_per_step": median, "steps": [...], "threads": n}.
Usage: /usr/bin/python3 scripts/bench-bert-peer.py PEER_DIR [--threads N] [--warmup W] [--steps S]
"""
import argparse
import json
import statistics
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("peer_dir")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--warmup", type=int, default=1)
ap.add_argument("--steps", type=int, default=3)
a = ap.parse_args()
sys.path.insert(0, a.peer_dir)
import torch  # noqa: E402
import bert_torch  # noqa: E402

torch.set_num_threads(a.threads)
torch.manual_seed(0)
B, T = 32, 64
model = bert_torch.BertForSequenceClassification(bert_torch.BertConfig(num_labels=6)).train()
g = torch.Generator().manual_seed(1)
lens = [T] + [int(8 + torch.rand(1, generator=g).item() * (T - 8)) for _ in range(B - 1)]
ids = torch.zeros(B, T, dtype=torch.long)
mask = torch.zeros(B, T, dtype=torch.long)
for b, n in enumerate(lens):
    ids[b, :n] = torch.randint(1000, 30522, (n,), generator=g)
    ids[b, 0], ids[b, n - 1] = 101, 102
    mask[b, :n] = 1
types = torch.zeros_like(ids)
labels = torch.arange(B) % 6
opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)


def step():
    opt.zero_grad()
    out = model(ids, mask, types)
    logits = out[0] if isinstance(out, (tuple, list)) else out
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    opt.step()


for _ in range(a.warmup):
    step()
times = []
for _ in range(a.steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
print(json.dumps({"seconds_per_step": statistics.median(times), "steps": times, "threads": torch.get_num_threads()}))
