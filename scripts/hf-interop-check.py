#!/usr/bin/python3
"""hf-interop-check MODEL_DIR INPUTS.json OUT.json: load a checkpoint moonbert saved into an
independent PyTorch DistilBERT with Hugging Face's parameter names (../shared/peer/distilbert_torch.py),
strictly (every key present, no extra key, shapes equal), run it on the given input ids and mask,
and write its logits as JSON. The safetensors file is parsed here by its specification (8-byte
header length, JSON header, raw little-endian data) so the check does not reuse moonbert's reader.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.environ.get("MOONBERT_SHARED", "../shared"), "peer"))
from distilbert_torch import Config, DistilBertForSequenceClassification  # noqa: E402

DTYPES = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = np.frombuffer(raw[base + a:base + b], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.astype(np.float32).copy())
    return header.get("__metadata__", {}), out


def main():
    model_dir, inputs_path, out_path = sys.argv[1:4]
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    assert cfg.get("model_type") == "distilbert", cfg.get("model_type")
    labels = cfg.get("id2label", {})
    c = Config(vocab_size=cfg["vocab_size"], max_position_embeddings=cfg["max_position_embeddings"],
               dim=cfg["dim"], n_heads=cfg["n_heads"], n_layers=cfg["n_layers"], hidden_dim=cfg["hidden_dim"],
               num_labels=len(labels) or 2)
    model = DistilBertForSequenceClassification(c).eval()
    meta, sd = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    model.load_state_dict(sd, strict=True)
    inp = json.load(open(inputs_path))
    ids = torch.tensor(inp["input_ids"], dtype=torch.long)
    mask = torch.tensor(inp["attention_mask"], dtype=torch.long)
    with torch.no_grad():
        logits = model(ids, mask)
    json.dump({"logits": logits.tolist(), "metadata": meta, "id2label": labels}, open(out_path, "w"))


if __name__ == "__main__":
    main()
