#!/usr/bin/env python3
"""Interposition coverage under blockswap (issue 7, part 4): runs small workloads that
reach the driver through cudart (allocation, elementwise kernels), cuBLAS (matmul:
cuLaunchKernelEx), cuDNN (convolution), NVRTC (a jiterator kernel) and Triton (a
@triton.jit kernel), and for each compares the kernels torch.profiler saw on the GPU
with the launches blockswap's hooks counted (blockswap_hook_calls), and checks that
allocations reached the shim. Run it through the launcher, once per allocator:

  scripts/blockswap-run -- python3 scripts/gpu/coverage.py [--allocator cudaMallocAsync]

Prints one JSON line per workload and a last `coverage` line; exit status 0 when every
workload's kernels were all seen (a workload whose library is missing is skipped and
says so), 1 when some were missed, 2 without a GPU or without the shim preloaded.
--no-shim runs the workloads without requiring the shim (counts are then null)."""
import argparse, json, os, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpuinfo  # noqa: E402


def workloads(torch):
    dev = "cuda"

    def cudart():
        x = torch.empty(96 << 20, dtype=torch.uint8, device=dev)  # a fresh segment
        x.fill_(3)
        y = (x.float() * 2 + 1).sum()
        return y.item()

    def cublas():
        a = torch.randn(1024, 1024, device=dev, dtype=torch.bfloat16)
        return (a @ a).float().sum().item()

    def cudnn():
        conv = torch.nn.Conv2d(16, 32, 3, padding=1).to(dev)
        x = torch.randn(4, 16, 64, 64, device=dev)
        with torch.backends.cudnn.flags(enabled=True):
            return conv(x).sum().item()

    def jiterator():
        fn = torch.cuda.jiterator._create_jit_fn(
            "template <typename T> T blockswap_cov(T x, T y) { return x * y + T(1); }")
        a = torch.randn(4096, device=dev)
        return fn(a, a).sum().item()

    def triton_kernel():
        import triton
        import triton.language as tl

        @triton.jit
        def add_one(x_ptr, n, BLOCK: tl.constexpr):
            i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            m = i < n
            tl.store(x_ptr + i, tl.load(x_ptr + i, mask=m) + 1, mask=m)

        x = torch.zeros(10000, device=dev)
        add_one[(triton.cdiv(10000, 1024),)](x, 10000, BLOCK=1024)
        return x.sum().item()

    return [("cudart", cudart), ("cublas", cublas), ("cudnn", cudnn), ("nvrtc-jiterator", jiterator),
            ("triton", triton_kernel)]


def count_kernels(trace_path):
    with open(trace_path) as f:
        data = json.load(f)
    events = data.get("traceEvents", data) if isinstance(data, dict) else data
    return sum(1 for e in events if isinstance(e, dict) and e.get("cat") == "kernel")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--allocator", default="native", choices=["native", "cudaMallocAsync"])
    ap.add_argument("--no-shim", action="store_true", help="do not require blockswap preloaded")
    ap.add_argument("--json", help="also write the summary line to this file")
    a = ap.parse_args(argv)
    ok, why = gpuinfo.have_gpu()
    if not ok:
        print(f"coverage: no NVIDIA driver/GPU: {why}")
        return 2
    shim = gpuinfo.Shim()
    if not shim.loaded and not a.no_shim:
        print("coverage: libblockswap is not preloaded: run it through scripts/blockswap-run")
        return 2
    if a.allocator == "cudaMallocAsync":
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "backend:cudaMallocAsync"
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.init()
    torch.zeros(1, device="cuda").sum().item()  # context and allocator up
    results, missed = [], 0
    for name, fn in workloads(torch):
        try:
            fn()  # warm-up: compiles (NVRTC, Triton) and loads modules outside the count
        except Exception as e:  # a library absent or refusing: say so, go on
            results.append({"kind": "coverage-workload", "workload": name, "skipped": f"{type(e).__name__}: {e}"[:300]})
            print(json.dumps(results[-1]), flush=True)
            continue
        torch.cuda.synchronize()
        before = {h: shim.calls(h) for h in gpuinfo.LAUNCH_HOOKS + gpuinfo.ALLOC_HOOKS}
        st0 = shim.stats()
        fd, trace = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        prof.export_chrome_trace(trace)
        kernels = count_kernels(trace)
        os.unlink(trace)
        st1 = shim.stats()
        after = {h: shim.calls(h) for h in before}
        delta = {h: after[h] - before[h] for h in before if after[h] is not None and after[h] != before[h]}
        launches = sum(delta.get(h, 0) for h in gpuinfo.LAUNCH_HOOKS) if shim.loaded else None
        r = {"kind": "coverage-workload", "workload": name, "allocator": a.allocator,
             "profiler_kernels": kernels, "shim_launches": launches, "hooks": delta,
             "shim_stats_launches": (st1["launches"] - st0["launches"]) if st0 and st1 else None,
             "allocations_seen": (st1["allocs"] - st0["allocs"]) if st0 and st1 else None}
        if shim.loaded:
            # The shim may launch kernels of its own (fingerprints at eviction); with no
            # limit pressure there are none, so the two counts must be equal.
            r["all_seen"] = launches >= kernels and kernels > 0
            missed += 0 if r["all_seen"] else 1
        results.append(r)
        print(json.dumps(r), flush=True)
    # Allocation paths: a fresh large tensor must reach the shim's allocation hooks.
    alloc = {"kind": "coverage-allocation", "allocator": a.allocator}
    if shim.loaded:
        st0 = shim.stats()
        big = torch.empty(512 << 20, dtype=torch.uint8, device="cuda")
        big.zero_()
        torch.cuda.synchronize()
        st1 = shim.stats()
        alloc["allocs_seen"] = st1["allocs"] - st0["allocs"]
        alloc["live_bytes_delta"] = st1["live_bytes"] - st0["live_bytes"]
        alloc["all_seen"] = alloc["live_bytes_delta"] >= (512 << 20) or alloc["allocs_seen"] > 0
        missed += 0 if alloc["all_seen"] else 1
        del big
    print(json.dumps(alloc), flush=True)
    summary = {"kind": "coverage", "allocator": a.allocator, "shim": shim.loaded,
               "workloads": len(results), "skipped": [r["workload"] for r in results if "skipped" in r],
               "missed": missed, "torch": torch.__version__}
    print(json.dumps(summary), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"summary": summary, "workloads": results, "allocation": alloc}, f, indent=1)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
