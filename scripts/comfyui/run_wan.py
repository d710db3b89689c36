#!/usr/bin/env python3
"""One sampling run of a WAN checkpoint through ComfyUI's own code, headless: ComfyUI's
argument parsing, its start-up steps that matter for memory (cudaMallocAsync choice,
dynamic VRAM in ComfyUI 0.12+), comfy.sd.load_diffusion_model, and comfy.sample.sample
with a seed, at a WAN video latent. Started by scripts/gpu-comfyui, under
scripts/blockswap-run for the blockswap runs. Writes RESULT.json and the output latent
(float32, little-endian) beside it.

Optional: the Python block swap of ComfyUI_Wan22Blockswap (--node-dir, --node-blocks),
applied as its WAN22BlockSwapPatcher node would; a HIGH then LOW noise pair (--ckpt2),
sampled in one process with the steps split, as two KSamplerAdvanced nodes would.
"""

import argparse
import hashlib
import importlib.util
import json
import os
import shlex
import sys
import time


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfyui", required=True, help="ComfyUI checkout (the folder with main.py)")
    ap.add_argument("--ckpt", required=True, help="diffusion model (.safetensors)")
    ap.add_argument("--ckpt2", help="second model: HIGH (--ckpt) then LOW (--ckpt2) noise")
    ap.add_argument("--split", type=int, default=None, help="pair: step where LOW takes over (default steps/2)")
    ap.add_argument("--result", required=True, help="JSON file to write; the latent goes beside it")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cfg", type=float, default=1.0,
                    help="1.0 (default): one model pass per step, and no batching decision that depends on free memory")
    ap.add_argument("--sampler", default="euler")
    ap.add_argument("--scheduler", default="simple")
    ap.add_argument("--comfy-args", default="", help="ComfyUI command-line flags, one string")
    ap.add_argument("--node-dir", help="ComfyUI_Wan22Blockswap checkout: apply its block swap")
    ap.add_argument("--node-blocks", type=int, default=20, help="its blocks_to_swap")
    ap.add_argument("--label", default="run")
    a = ap.parse_args(argv)
    if a.frames < 1 or (a.frames - 1) % 4:
        ap.error("--frames must be 4k+1 (WAN's VAE packs 4 frames per latent frame)")
    if a.width % 16 or a.height % 16:
        ap.error("--width and --height must be multiples of 16")
    return a


def vm_hwm_kib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def start_comfyui(a):
    """Does what ComfyUI's main.py does before a model is loaded, in its order, minus the
    server: parse its flags, pick the CUDA allocator, start dynamic VRAM if on."""
    comfy_dir = os.path.abspath(a.comfyui)
    sys.path.insert(0, comfy_dir)
    sys.argv = [os.path.join(comfy_dir, "main.py")] + shlex.split(a.comfy_args)
    import comfy.options
    comfy.options.enable_args_parsing()
    from comfy.cli_args import args

    if "torch" in sys.modules:
        raise SystemExit("run_wan: torch was imported before ComfyUI's start-up; it must not be")
    if getattr(args, "deterministic", False):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if not args.cpu:
        import cuda_malloc  # noqa: F401  (sets PYTORCH_CUDA_ALLOC_CONF unless disabled)

    aimdo = None
    enables = getattr(__import__("comfy.cli_args", fromlist=["x"]), "enables_dynamic_vram", None)
    if enables is not None and enables():
        import comfy_aimdo.control as aimdo
        headroom = None if args.reserve_vram is None else int(args.reserve_vram * 1024 ** 3)
        for kwargs in ({"simple_vram_headroom": headroom,
                        "nvml_pressure": not getattr(args, "disable_nvml_pressure", False)},
                       {"simple_vram_headroom": headroom}, {}):
            try:
                aimdo.init(**kwargs)  # keyword sets of the aimdo versions ComfyUI supports
                break
            except TypeError:
                continue

    import comfy.model_management as mm
    import comfy.model_patcher

    dynamic = False
    if aimdo is not None and (args.enable_dynamic_vram or mm.is_nvidia()):
        devs = mm.get_all_torch_devices()
        try:
            ok = aimdo.init_devices((d.index, int(getattr(args, "vram_headroom", 0) * 1024 ** 3)) for d in devs)
        except TypeError:
            ok = aimdo.init_devices(d.index for d in devs)
        if ok:
            import comfy.memory_management
            comfy.model_patcher.CoreModelPatcher = comfy.model_patcher.ModelPatcherDynamic
            comfy.memory_management.aimdo_enabled = True
            dynamic = True
    return args, dynamic


def load_node(node_dir):
    """Imports a custom node's package as ComfyUI's loader does (a package from its
    folder, so its relative imports work) and returns its NODE_CLASS_MAPPINGS."""
    node_dir = os.path.abspath(node_dir)
    name = "custom_nodes_" + os.path.basename(node_dir).replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, os.path.join(node_dir, "__init__.py"),
                                                  submodule_search_locations=[node_dir])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod.NODE_CLASS_MAPPINGS


def main(argv=None):
    a = parse(argv)
    t_start = time.monotonic()
    args, dynamic = start_comfyui(a)

    import torch
    import comfy.model_management as mm
    import comfy.sample
    import comfy.sd
    import comfyui_version

    cuda = torch.cuda.is_available() and not args.cpu
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    t0 = time.monotonic()
    models = [comfy.sd.load_diffusion_model(a.ckpt)]
    if a.ckpt2:
        models.append(comfy.sd.load_diffusion_model(a.ckpt2))
    load_s = time.monotonic() - t0
    dm = models[0].model.diffusion_model
    detected = {"class": type(models[0].model).__name__, "blocks": len(dm.blocks),
                "dim": dm.dim, "heads": dm.num_heads, "model_type": getattr(dm, "model_type", None),
                "dtype": str(models[0].model.get_dtype())}

    node = None
    if a.node_dir:
        patcher_cls = load_node(a.node_dir)["WAN22BlockSwapPatcher"]
        # Its defaults in the UI: use_non_blocking off, no prefetch, embeddings on GPU.
        models = [patcher_cls().patch_model(m, blocks_to_swap=a.node_blocks, use_non_blocking=False,
                                            prefetch_blocks=0, offload_img_emb=False,
                                            offload_txt_emb=False, debug=False)[0] for m in models]
        node = {"dir": a.node_dir, "blocks_to_swap": a.node_blocks}

    # Text conditioning: what umt5-xxl would give, [1, 512, 4096], fixed by the seed.
    g = torch.Generator().manual_seed(a.seed + 1000)
    positive = [[torch.randn(1, 512, 4096, generator=g) * 0.1, {}]]
    negative = [[torch.randn(1, 512, 4096, generator=g) * 0.1, {}]]
    t_lat = (a.frames - 1) // 4 + 1
    latent = torch.zeros(1, 16, t_lat, a.height // 8, a.width // 8)
    latent = comfy.sample.fix_empty_latent_channels(models[0], latent)

    stamps = []

    def callback(step, x0, x, total):
        sync()
        stamps.append(time.monotonic())

    steps = a.steps
    t0 = time.monotonic()
    if len(models) == 1:
        noise = comfy.sample.prepare_noise(latent, a.seed)
        out = comfy.sample.sample(models[0], noise, steps, a.cfg, a.sampler, a.scheduler, positive,
                                  negative, latent, denoise=1.0, callback=callback,
                                  disable_pbar=True, seed=a.seed)
    else:
        split = a.split if a.split is not None else steps // 2
        noise = comfy.sample.prepare_noise(latent, a.seed)
        mid = comfy.sample.sample(models[0], noise, steps, a.cfg, a.sampler, a.scheduler, positive,
                                  negative, latent, start_step=0, last_step=split,
                                  force_full_denoise=False, callback=callback,
                                  disable_pbar=True, seed=a.seed)
        zero = torch.zeros(mid.size(), dtype=mid.dtype, layout=mid.layout, device="cpu")
        out = comfy.sample.sample(models[1], zero, steps, a.cfg, a.sampler, a.scheduler, positive,
                                  negative, mid, disable_noise=True, start_step=split,
                                  last_step=10000, force_full_denoise=True, callback=callback,
                                  disable_pbar=True, seed=a.seed + 1)
    sync()
    sample_s = time.monotonic() - t0

    out = out.detach().to("cpu", torch.float32).contiguous()
    raw = out.numpy().tobytes()
    base = os.path.splitext(a.result)[0]
    with open(base + ".latent.f32", "wb") as f:
        f.write(raw)
    step_s = [round(b - a_, 4) for a_, b in zip([t0] + stamps[:-1], stamps)]
    steady = step_s[1:] if len(step_s) > 1 else step_s
    res = {
        "label": a.label,
        "comfyui_version": comfyui_version.__version__,
        "comfy_args": a.comfy_args,
        "dynamic_vram": dynamic,
        "vram_state": str(mm.vram_state),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "checkpoints": [a.ckpt] + ([a.ckpt2] if a.ckpt2 else []),
        "detected": detected,
        "node": node,
        "steps": steps, "frames": a.frames, "width": a.width, "height": a.height,
        "seed": a.seed, "cfg": a.cfg, "sampler": a.sampler, "scheduler": a.scheduler,
        "latent_shape": list(out.shape),
        "output_sha256": hashlib.sha256(raw).hexdigest(),
        "output_finite": bool(torch.isfinite(out).all()),
        "output_abs_mean": float(out.abs().mean()),
        "load_s": round(load_s, 3),
        "sample_s": round(sample_s, 3),
        "step_s": step_s,
        "s_per_step": round(sum(steady) / len(steady), 4) if steady else None,
        "first_step_s": step_s[0] if step_s else None,
        "torch_max_allocated": torch.cuda.max_memory_allocated() if cuda else None,
        "torch_max_reserved": torch.cuda.max_memory_reserved() if cuda else None,
        "vm_hwm_kib": vm_hwm_kib(),
        "wall_s": round(time.monotonic() - t_start, 3),
    }
    with open(a.result, "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
    print("run_wan: %s: %s s/step, output %s" % (a.label, res["s_per_step"], res["output_sha256"][:16]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
