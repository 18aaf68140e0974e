"""The mnist preset's UNet (../shared/MODEL.md, src/nn/unet.rs) in PyTorch, to time one
training step on the same GPU as `ddpm bench`: forward, L_simple, backward, grad-norm clipping,
Adam and the EMA update, fp32. Prints one line per mode and batch size as it is measured:
eager and a whole-step CUDA graph in both of PyTorch's fp32 modes (strict fp32, TF32 off, what
our WGSL kernels compute; and PyTorch's default, TF32 allowed in cuDNN convolutions), and the
model under torch.compile(mode="reduce-overhead") in strict fp32.

    python3 scripts/torch_unet_step.py [--batches 32,64,128] [--reps 50] [--modes eager,graphs,compile]
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

GROUPS = 8


def norm(c):
    return nn.GroupNorm(GROUPS, c, eps=1e-5)


def zero(module):
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, c_in, c_out, emb_dim, dropout=0.1):
        super().__init__()
        self.in_norm = norm(c_in)
        self.in_conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.out_norm = norm(c_out)
        self.dropout = nn.Dropout(dropout)
        self.out_conv = zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        h = self.in_conv(F.silu(self.in_norm(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.out_conv(self.dropout(F.silu(self.out_norm(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = norm(c)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = zero(nn.Conv2d(c, c, 1))

    def forward(self, x):
        n, c, hh, ww = x.shape
        h = self.norm(x)
        q = self.q(h).reshape(n, c, -1)
        k = self.k(h).reshape(n, c, -1)
        v = self.v(h).reshape(n, c, -1)
        w = torch.softmax(torch.bmm(q.transpose(1, 2), k) / math.sqrt(c), dim=-1)  # [n, hw, hw]
        a = torch.bmm(v, w.transpose(1, 2)).reshape(n, c, hh, ww)
        return x + self.proj_out(a)


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class UNet(nn.Module):
    def __init__(self, ch=32, mult=(1, 2, 2), blocks=2, attn_sizes=(7,), size=28, c_io=1):
        super().__init__()
        self.ch = ch
        emb = 4 * ch
        self.time_embed = nn.Sequential(nn.Linear(ch, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.conv_in = nn.Conv2d(c_io, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skips, c = [ch], ch
        for level, m in enumerate(mult):
            for _ in range(blocks):
                layers = [ResBlock(c, ch * m, emb)]
                c = ch * m
                if size in attn_sizes:
                    layers.append(Attention(c))
                self.down.append(nn.ModuleList(layers))
                skips.append(c)
            if level + 1 < len(mult):
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
                size //= 2
        self.middle = nn.ModuleList([ResBlock(c, c, emb), Attention(c), ResBlock(c, c, emb)])
        self.up = nn.ModuleList()
        for level, m in reversed(list(enumerate(mult))):
            for _ in range(blocks + 1):
                layers = [ResBlock(c + skips.pop(), ch * m, emb)]
                c = ch * m
                if size in attn_sizes:
                    layers.append(Attention(c))
                self.up.append(nn.ModuleList(layers))
            if level > 0:
                self.up.append(nn.Conv2d(c, c, 3, padding=1))
                size *= 2
        self.out_norm = norm(c)
        self.conv_out = zero(nn.Conv2d(c, c_io, 3, padding=1))

    def forward(self, x, t):
        emb = F.silu(self.time_embed(timestep_embedding(t, self.ch)))
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            if isinstance(layer, nn.Conv2d):
                h = layer(h)
            else:
                for sub in layer:
                    h = sub(h, emb) if isinstance(sub, ResBlock) else sub(h)
            hs.append(h)
        for sub in self.middle:
            h = sub(h, emb) if isinstance(sub, ResBlock) else sub(h)
        for layer in self.up:
            if isinstance(layer, nn.Conv2d):
                h = layer(F.interpolate(h, scale_factor=2, mode="nearest"))
            else:
                h = torch.cat([h, hs.pop()], dim=1)
                for sub in layer:
                    h = sub(h, emb) if isinstance(sub, ResBlock) else sub(h)
        return self.conv_out(F.silu(self.out_norm(h)))


def time_steps(batch, reps, device, mode):
    """Milliseconds per training step at `batch`: eager PyTorch, the whole step captured once
    as a CUDA graph and replayed (`graphs`: no Python or launch cost per kernel, the floor of
    what PyTorch's kernels take), or the model under torch.compile(mode="reduce-overhead")
    (Inductor's fused kernels in CUDA graphs; the optimizer and EMA stay eager)."""
    torch.manual_seed(0)
    model = UNet().to(device)
    ema = [p.detach().clone() for p in model.parameters()]
    # capturable: Adam keeps its step count on the GPU, which a graph replay needs.
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, capturable=(mode == "graphs"))
    forward = torch.compile(model, mode="reduce-overhead") if mode == "compile" else model
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0).float().to(device)
    x0 = torch.rand(batch, 1, 28, 28, device=device) * 2 - 1

    def step():
        t = torch.randint(0, 1000, (batch,), device=device)
        noise = torch.randn_like(x0)
        a = abar[t][:, None, None, None]
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(forward(x_t, t), noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            params = list(model.parameters())
            torch._foreach_mul_(ema, 0.999)
            torch._foreach_add_(ema, params, alpha=0.001)
        return loss

    def eager_step():
        opt.zero_grad(set_to_none=True)
        return step()

    run = eager_step
    if mode == "graphs":
        # Warm-up on a side stream, then capture one whole step (PyTorch's "whole network
        # capture"): gradients are set to None first so backward allocates them from the
        # graph's pool, and each replay overwrites them.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                eager_step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            step()
        run = graph.replay

    for _ in range(5):
        run()
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        run()
    sync(device)
    return (time.perf_counter() - start) * 1e3 / reps, sum(p.numel() for p in model.parameters())


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="32,64,128")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--modes", default="eager,graphs,compile",
                    help="any of eager, graphs (CUDA only), compile, comma-separated")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test")
    args = ap.parse_args()
    device = args.device
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {name}", flush=True)
    batches = [int(b) for b in args.batches.split(",")]
    for mode in args.modes.split(","):
        # Strict fp32 is what our WGSL kernels compute; TF32 is PyTorch's default for cuDNN
        # convolutions. Compiling is slow (each batch size is its own graph): strict fp32 only.
        for tf32 in (False,) if mode == "compile" else (False, True):
            if device == "cuda":
                torch.backends.cuda.matmul.allow_tf32 = tf32
                torch.backends.cudnn.allow_tf32 = tf32
                torch.backends.cudnn.benchmark = True
            precision = "TF32 allowed" if tf32 else "strict fp32"
            for batch in batches:
                label = {"eager": "eager", "graphs": "CUDA graph", "compile": "compiled"}[mode]
                try:
                    ms, n_params = time_steps(batch, args.reps, device, mode)
                except Exception as e:  # one mode failing must not lose the others' lines
                    print(f"torch {label} {precision}: batch {batch} failed: "
                          f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                          flush=True)
                    break
                print(f"torch {label} {precision}: mnist UNet step (batch {batch}) {ms:.2f} ms, "
                      f"{n_params} parameters", flush=True)


if __name__ == "__main__":
    main()
