"""Latency and peak memory of SMHRNet inference: naive full-map heads vs. heads at peaks only.

For each backbone and input resolution, with 1 and 4 hands (peaks forced by a constructed
heatmap, so random weights suffice), two paths run interleaved in the same process:

- naive: `model(x)` (full maps of every head: hm, params, texture, light, handmap), then the
  values at the peaks are gathered from the maps;
- optimized: `features(x)`, the `hm` map, then `heads_at` for `params` and `handmap` only
  (texture and light are not needed at inference).

Latency per image: median and p90 over `--runs` after `--warmup` runs (batch of one image).
Peak memory: on CPU the growth of the process's peak resident set (VmHWM) during one call, with
the peak reset through /proc/self/clear_refs and free heap returned by malloc_trim first; on CUDA
`torch.cuda.max_memory_allocated` above the allocation before the call.

Usage:
    python benchmarks/model_speed.py --runs 10 --threads 1 --out speed.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from smhr_core.config import BACKBONES, ModelConfig
from smhr_core.decode import find_peaks
from smhr_core.network import HEAD_CHANNELS, NECK_CHANNELS, SMHRNet

ALL_HEADS = ("hm", "params", "texture", "light", "handmap")
PEAK_HEADS = ("params", "handmap")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated")
    parser.add_argument("--resolutions", default="224,384", help="comma-separated, pixels")
    parser.add_argument("--hands", default="1,4", help="comma-separated hand counts")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per path")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per path first")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    return parser.parse_args()


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def peak_memory_mb(call: Callable[[], object], device: torch.device) -> float:
    """Extra memory (MB) the call needed at its peak."""
    if device.type == "cuda":
        synchronise(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        call()
        synchronise(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    call()
    return (_status_kib("VmHWM") - before) / 1024


def forced_heatmap(map_size: int, hands: int, device: torch.device) -> torch.Tensor:
    """Logits with `hands` clear, well-separated peaks (one in a corner, to include borders)."""
    hm = torch.full((1, 1, map_size, map_size), -8.0, device=device)
    step = max(map_size // (hands + 1), 3)
    cells = [(0, 0)] + [(step * (i + 1), (step * (i + 2)) % map_size) for i in range(hands - 1)]
    for i, (y, x) in enumerate(cells):
        hm[0, 0, y, x] = 4.0 - 0.1 * i
    return hm


def count_feature_macs(model: SMHRNet, x: torch.Tensor) -> int:
    """Multiply-accumulates of `features` (backbone + neck) for one image, from conv shapes."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):
            total += inputs[0].numel() * module.out_channels // module.groups * k
        else:
            total += output.numel() * module.in_channels // module.groups * k

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and not _in_head(model, m)
    ]
    with torch.inference_mode():
        model.features(x[:1])
    for handle in handles:
        handle.remove()
    return total


def _in_head(model: SMHRNet, module: nn.Module) -> bool:
    return any(module in getattr(model, name).modules() for name in model.head_names)


def head_macs_per_cell(name: str, width: int = NECK_CHANNELS) -> int:
    return width * width * 9 + width * HEAD_CHANNELS[name]


def parameter_counts(model: SMHRNet) -> dict[str, int]:
    heads = {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in ALL_HEADS}
    neck_modules = ("p3", "p4", "p5", "p3_l2", "p4_l2", "p5_l2", "feat", "feat_bn")
    neck = sum(p.numel() for n in neck_modules for p in getattr(model, n).parameters())
    total = sum(p.numel() for p in model.parameters())
    return {"total": total, "backbone": total - neck - sum(heads.values()), "neck": neck, **heads}


def quantiles(times_s: list[float]) -> dict[str, float]:
    ordered = sorted(times_s)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"median_ms": 1e3 * statistics.median(ordered), "p90_ms": 1e3 * p90}


def bench_one(
    model: SMHRNet, resolution: int, hands: int, args: argparse.Namespace, device: torch.device
) -> dict:
    generator = torch.Generator().manual_seed(resolution + hands)
    x = torch.randn(1, 3, resolution, resolution, generator=generator).to(device)
    hm_forced = forced_heatmap(resolution // 4, hands, device)

    def naive() -> dict[str, torch.Tensor]:
        out = model(x)
        peaks = find_peaks(hm_forced, hands, 0.5)
        return {n: out[n][peaks.batch_index, :, peaks.ys, peaks.xs] for n in ALL_HEADS}

    def optimized() -> dict[str, torch.Tensor]:
        feat = model.features(x)
        model.head_maps(feat, ["hm"])
        peaks = find_peaks(hm_forced, hands, 0.5)
        return model.heads_at(feat, peaks.batch_index, peaks.ys, peaks.xs, PEAK_HEADS)

    paths = {"naive": naive, "optimized": optimized}
    times: dict[str, list[float]] = {name: [] for name in paths}
    with torch.inference_mode():
        reference, fast = naive(), optimized()
        for name in PEAK_HEADS:
            assert reference[name].shape == (hands, HEAD_CHANNELS[name])
            torch.testing.assert_close(fast[name], reference[name], rtol=1e-3, atol=1e-4)
        for _ in range(args.warmup):
            naive()
            optimized()
        for run in range(args.runs):
            # Alternate the order so drifting machine load affects both paths alike.
            order = ("naive", "optimized") if run % 2 == 0 else ("optimized", "naive")
            for name in order:
                synchronise(device)
                start = time.perf_counter()
                paths[name]()
                synchronise(device)
                times[name].append(time.perf_counter() - start)
        memory = {name: peak_memory_mb(call, device) for name, call in paths.items()}

    cells = (resolution // 4) ** 2
    features = count_feature_macs(model, x)
    naive_heads = cells * sum(head_macs_per_cell(n) for n in ALL_HEADS)
    fast_heads = cells * head_macs_per_cell("hm") + hands * sum(
        head_macs_per_cell(n) for n in PEAK_HEADS
    )
    result = {
        "resolution": resolution,
        "hands": hands,
        **{name: {**quantiles(times[name]), "peak_mb": memory[name]} for name in paths},
        "gmacs": {
            "features": features / 1e9,
            "heads_naive": naive_heads / 1e9,
            "heads_optimized": fast_heads / 1e9,
            "total_naive": (features + naive_heads) / 1e9,
            "total_optimized": (features + fast_heads) / 1e9,
        },
    }
    result["speedup"] = result["naive"]["median_ms"] / result["optimized"]["median_ms"]
    return result


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    resolutions = [int(r) for r in args.resolutions.split(",")]
    hand_counts = [int(h) for h in args.hands.split(",")]

    report = {
        "settings": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "torch": torch.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
        },
        "memory_method": (
            "cuda max_memory_allocated delta"
            if device.type == "cuda"
            else "CPU peak RSS (VmHWM) growth during one call, peak reset via /proc/self/clear_refs"
        ),
        "parameters": {},
        "results": [],
    }
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    for backbone in backbones:
        for resolution in resolutions:
            config = ModelConfig(backbone=backbone, input_resolution=resolution, heads=ALL_HEADS)
            model = SMHRNet(config).to(device).eval()
            report["parameters"][backbone] = parameter_counts(model)
            for hands in hand_counts:
                result = {"backbone": backbone, **bench_one(model, resolution, hands, args, device)}
                report["results"].append(result)
                print_row(result)
            del model
    print_tables(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")


def print_row(r: dict) -> None:
    print(
        f"  {r['backbone']:<18} {r['resolution']:>4} px {r['hands']} hand(s): "
        f"naive {r['naive']['median_ms']:.0f} ms, optimized {r['optimized']['median_ms']:.0f} ms",
        flush=True,
    )


def print_tables(report: dict) -> None:
    header = (
        "| backbone | R | hands | naive median / p90 ms | optimized median / p90 ms | speedup "
        "| naive peak MB | optimized peak MB | GMACs naive / optimized |"
    )
    print()
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for r in report["results"]:
        n, o, g = r["naive"], r["optimized"], r["gmacs"]
        print(
            f"| {r['backbone']} | {r['resolution']} | {r['hands']} "
            f"| {n['median_ms']:.0f} / {n['p90_ms']:.0f} "
            f"| {o['median_ms']:.0f} / {o['p90_ms']:.0f} "
            f"| {r['speedup']:.2f}x | {n['peak_mb']:.0f} | {o['peak_mb']:.0f} "
            f"| {g['total_naive']:.1f} / {g['total_optimized']:.1f} |"
        )
    print()
    print("| backbone | total params | backbone | neck | hm | params | texture | light | handmap |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, p in report["parameters"].items():
        cols = [p[k] / 1e6 for k in ("total", "backbone", "neck", *ALL_HEADS)]
        print(f"| {name} | " + " | ".join(f"{c:.2f} M" for c in cols) + " |")


if __name__ == "__main__":
    main()
