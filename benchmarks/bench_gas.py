"""Milliseconds per GAS ascent step: autograd, the closed-form gradient, and the compiled closed form.

    python benchmarks/bench_gas.py                      # paper dims: 8 images x 32x32 patches, 1536 -> 1024
    python benchmarks/bench_gas.py --dims 512 --hidden 512

Each variant runs `glass.ascend_in_hidden_space` on the same random features with a fresh copy of the
same discriminator (training mode), after one warm-up call (the compiled variant compiles there); the
median over --repeats is printed, with the largest difference of the ascended features from the
autograd variant's.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Any
from collections.abc import Callable

import torch
import torch.nn.functional as F

import errors
from glass import GasGradient, ascend_in_hidden_space
from model import Discriminator


def autograd_gradient(disc: Discriminator, hidden: torch.Tensor, companion: Any) -> torch.Tensor:
    """The ascent gradient by autograd through batch norm, LeakyReLU, the tail and the BCE (the reference's way)."""
    norm, act = disc.body[0][1], disc.body[0][2]
    with torch.enable_grad():
        leaf = hidden.detach().requires_grad_(True)
        batch_mean, batch_var, _ = disc.beside_statistics(leaf, companion, norm)
        gain = norm.weight / torch.sqrt(batch_var + norm.eps)
        scores = disc.tail(act(torch.addcmul(norm.bias - batch_mean * gain, leaf, gain)))
        loss = F.binary_cross_entropy(scores, torch.ones_like(scores))
        return torch.autograd.grad(loss, [leaf])[0]


def time_variant(gradient: Callable[..., torch.Tensor], disc: Discriminator, true: torch.Tensor,
                 gaus: torch.Tensor, steps: int, repeats: int) -> tuple[float, torch.Tensor]:
    """(median ms per ascent step, ascended features of the first timed run) of one gradient variant.

    One copy of the discriminator serves the warm-up and every repeat, as one model serves a whole
    training run (torch.compile specialises on the module it is given)."""
    own = copy.deepcopy(disc)
    first = ascend_in_hidden_space(own, true, gaus, true, 0.5, 1.0, steps, gradient=gradient)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ascend_in_hidden_space(own, true, gaus, true, 0.5, 1.0, steps, gradient=gradient)
        times.append((time.perf_counter() - start) / steps * 1000)
    return statistics.median(times), first


def main(argv: list[str] | None = None) -> int:
    """Prints the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=8 * 32 * 32, help="GAS rows (images x patches)")
    parser.add_argument("--dims", type=int, default=1536)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    true = torch.randn(args.rows, args.dims)
    gaus = true + 0.015 * torch.randn(args.rows, args.dims)
    disc = Discriminator(args.dims, n_layers=2, hidden=args.hidden).train()
    variants = {"autograd": autograd_gradient, "closed form": GasGradient("off"),
                "closed form, torch.compile": GasGradient("on")}
    results = {name: time_variant(fn, disc, true, gaus, args.steps, args.repeats) for name, fn in variants.items()}
    base_ms, base_out = results["autograd"]
    print(f"GAS ascent, {args.rows} rows, {args.dims} -> {args.hidden}, {args.threads} threads, "
          f"median of {args.repeats} x {args.steps} steps (each step includes the N x H x H product)")
    print(f"{'gradient':<28} {'ms / step':>10} {'speed-up':>9} {'max |features - autograd|':>27}")
    for name, (ms, out) in results.items():
        print(f"{name:<28} {ms:>10.1f} {base_ms / ms:>8.2f}x {float((out - base_out).abs().max()):>27.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(errors.run_script(main))
