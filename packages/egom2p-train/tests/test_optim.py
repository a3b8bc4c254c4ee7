"""Optimizer groups as the original's (docs/original-behaviour.md#optimizer): norms and biases undecayed,
embeddings decayed, tied params once."""

import torch
from egom2p.train.optim import build_optimizer, is_no_decay
from torch import nn


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok_emb = nn.Embedding(10, 6)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 6))
        self.block = nn.ModuleDict({"norm1": nn.LayerNorm(6)})  # named block.norm1.*
        self.decoder_proj_context = nn.Linear(6, 6)
        self.encoder_norm = nn.LayerNorm(6, bias=False)
        self.to_logits = nn.Linear(6, 10, bias=False)
        self.to_logits.weight = self.tok_emb.weight  # tied
        self.frozen = nn.Parameter(torch.zeros(3), requires_grad=False)


def test_names_exempt_from_decay():
    for name in ("blocks.0.norm1.weight", "encoder_norm.weight", "decoder_proj_context.bias",
                 "x.lookup_table_weight", "layer.gamma", "blocks.0.query_norm.weight"):
        assert is_no_decay(name), name
    for name in ("enc_emb.tok_rgb.token_emb.weight", "mask_token", "blocks.0.attn.qkv.weight"):
        assert not is_no_decay(name), name


def test_groups_and_hyperparameters():
    net = TinyNet()
    opt = build_optimizer(net, lr=4e-4, weight_decay=0.05)
    decay, no_decay = opt.param_groups
    ids = lambda group: {id(p) for p in group["params"]}  # noqa: E731
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert ids(decay) == {id(net.tok_emb.weight), id(net.mask_token), id(net.decoder_proj_context.weight)}
    assert ids(no_decay) == {id(net.block.norm1.weight), id(net.block.norm1.bias), id(net.decoder_proj_context.bias),
                             id(net.encoder_norm.weight)}
    assert len(decay["params"]) == 3  # the tied embedding/head weight appears once
    assert isinstance(opt, torch.optim.AdamW)
    assert decay["betas"] == (0.9, 0.95) and decay["eps"] == 1e-8 and decay["lr"] == 4e-4
