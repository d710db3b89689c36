#!/usr/bin/env python3
"""A WAN 2.1 14B-shaped transformer written with torch.nn, random weights from a seed,
for issue 7's runs (a) all resident, (b) under blockswap with a VRAM limit, (c) with
VRAM taken by a second process. Runs STEPS forward passes at one fixed input and
prints one JSON line per step and a last `wan-result` line whose `checksum` (sha256 of
the output's bytes) must be the same in every run.

Block layout (docs: /work/shared/DESIGN.md section 5), parameter names as in WAN:
blocks.{i}.self_attn.{q,k,v,o} [d,d] + bias, .self_attn.norm_q/norm_k [d] (RMSNorm),
the same for cross_attn, norm3 weight/bias [d], ffn.0 [f,d] + bias, ffn.2 [d,f] + bias
(GELU tanh between), modulation [1,6,d]. Attention through
torch.nn.functional.scaled_dot_product_attention. Weights are made on the CPU and
copied to the device one tensor at a time, as a checkpoint load would be (under
blockswap those copies land in host backing until a kernel needs them).

Sizes default to WAN 14B's (dim 5120, ffn 13824, 40 heads); --blocks, --seq, --ctx
set the depth and token counts. --device cpu --dtype float32 runs anywhere (small
sizes), for checking the script. Deterministic: fixed seeds, deterministic
algorithms (CUBLAS_WORKSPACE_CONFIG is set before torch loads)."""
import argparse, hashlib, json, math, os, sys, time


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=5120)
    ap.add_argument("--ffn", type=int, default=13824)
    ap.add_argument("--heads", type=int, default=40)
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--seq", type=int, default=4096, help="tokens of the video latent")
    ap.add_argument("--ctx", type=int, default=512, help="tokens of the text conditioning")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--allocator", default="native", choices=["native", "cudaMallocAsync"],
                    help="PyTorch's CUDA allocator backend (PYTORCH_CUDA_ALLOC_CONF)")
    ap.add_argument("--json", help="also write the result line to this file")
    return ap.parse_args(argv)


def build(torch, a):
    nn, F = torch.nn, torch.nn.functional
    dim, heads = a.dim, a.heads

    class RMSNorm(nn.Module):
        def __init__(self, d, eps=1e-6):
            super().__init__()
            self.eps = eps
            self.weight = nn.Parameter(torch.ones(d))

        def forward(self, x):
            xf = x.float()
            return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
            self.norm_q, self.norm_k = RMSNorm(dim), RMSNorm(dim)

        def forward(self, x, ctx):
            b, n, _ = x.shape
            q = self.norm_q(self.q(x)).view(b, n, heads, -1).transpose(1, 2)
            k = self.norm_k(self.k(ctx)).view(b, ctx.shape[1], heads, -1).transpose(1, 2)
            v = self.v(ctx).view(b, ctx.shape[1], heads, -1).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v)
            return self.o(y.transpose(1, 2).reshape(b, n, dim))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            self.norm3 = nn.LayerNorm(dim, eps=1e-6)
            self.self_attn, self.cross_attn = Attention(), Attention()
            self.ffn = nn.Sequential(nn.Linear(dim, a.ffn), nn.GELU(approximate="tanh"),
                                     nn.Linear(a.ffn, dim))
            self.modulation = nn.Parameter(torch.zeros(1, 6, dim))

        def forward(self, x, e, ctx):
            sh, sc, g, c_sh, c_sc, c_g = (self.modulation + e).chunk(6, dim=1)
            h = self.norm1(x) * (1 + sc) + sh
            x = x + self.self_attn(h, h) * g
            x = x + self.cross_attn(self.norm3(x), ctx)
            h = self.norm2(x) * (1 + c_sc) + c_sh
            return x + self.ffn(h) * c_g

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(Block() for _ in range(a.blocks))

        def forward(self, x, e, ctx):
            for blk in self.blocks:
                x = blk(x, e, ctx)
            return x

    with torch.device("meta"):
        model = Model()
    return model


def materialize(torch, model, a, dtype, device):
    """Random weights, a pure function of (seed, parameter name): made on the CPU in
    float32, converted, then copied to the device one tensor at a time."""
    names = dict(model.named_parameters())
    for name, p in names.items():
        g = torch.Generator().manual_seed(a.seed * 1000003 + int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
        if name.endswith("norm_q.weight") or name.endswith("norm_k.weight") or name.endswith("norm3.weight"):
            t = torch.ones(p.shape)
        elif name.endswith("modulation"):
            t = torch.randn(p.shape, generator=g) * 0.02
        elif name.endswith(".bias"):
            t = (torch.rand(p.shape, generator=g) * 2 - 1) * 0.01
        else:  # a Linear weight [out, in]
            bound = 1.0 / math.sqrt(p.shape[1])
            t = (torch.rand(p.shape, generator=g) * 2 - 1) * bound
        mod_name, _, attr = name.rpartition(".")
        mod = model.get_submodule(mod_name)
        setattr(mod, attr, torch.nn.Parameter(t.to(dtype).to(device), requires_grad=False))
        del t
    return model


def main(argv=None):
    a = parse_args(argv)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if a.allocator == "cudaMallocAsync":
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "backend:cudaMallocAsync"
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    dtype = getattr(torch, a.dtype)
    dev = torch.device(a.device)
    if a.dim % a.heads:
        raise SystemExit(f"wan_model: dim {a.dim} is not a multiple of heads {a.heads}")
    t0 = time.perf_counter()
    model = materialize(torch, build(torch, a), a, dtype, dev).eval()
    nparams = sum(p.numel() for p in model.parameters())
    block_bytes = sum(p.numel() * p.element_size() for p in model.blocks[0].parameters())
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    sync()
    load_s = time.perf_counter() - t0

    g = torch.Generator().manual_seed(a.seed + 1)
    x = torch.randn(1, a.seq, a.dim, generator=g).to(dtype).to(dev)
    e = (torch.randn(1, 6, a.dim, generator=g) * 0.1).to(dtype).to(dev)
    ctx = torch.randn(1, a.ctx, a.dim, generator=g).to(dtype).to(dev)
    print(json.dumps({"kind": "wan-model", "params": nparams, "blocks": a.blocks,
                      "block_bytes": block_bytes, "weights_bytes": nparams * torch.finfo(dtype).bits // 8,
                      "dim": a.dim, "ffn": a.ffn, "heads": a.heads, "seq": a.seq, "ctx": a.ctx,
                      "dtype": a.dtype, "device": str(dev), "allocator": a.allocator,
                      "load_s": round(load_s, 3), "torch": torch.__version__}), flush=True)
    times, digests = [], []
    with torch.inference_mode():
        for i in range(a.steps):
            sync()
            t = time.perf_counter()
            out = model(x, e, ctx)
            sync()
            ms = (time.perf_counter() - t) * 1e3
            d = hashlib.sha256(out.contiguous().view(-1).view(torch.uint8).cpu().numpy().tobytes()).hexdigest()
            times.append(ms)
            digests.append(d)
            print(json.dumps({"kind": "wan-step", "step": i, "ms": round(ms, 3), "checksum": d,
                              "finite": bool(torch.isfinite(out.float()).all())}), flush=True)
    res = {"kind": "wan-result", "checksum": digests[-1], "steps": a.steps,
           "all_steps_equal": len(set(digests)) == 1, "step_ms": [round(t, 3) for t in times],
           "step_ms_after_first": round(sum(times[1:]) / max(1, len(times) - 1), 3)}
    if dev.type == "cuda":
        res["torch_max_allocated"] = torch.cuda.max_memory_allocated()
        res["torch_max_reserved"] = torch.cuda.max_memory_reserved()
    print(json.dumps(res), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
