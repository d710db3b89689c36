"""Helpers for scripts/gpu-check and the scripts beside it (Python 3 standard library
only, importable without a GPU): the shim's counters through ctypes, the device's
memory from outside a process through NVML (libnvidia-ml.so.1) or nvidia-smi, and a
sampler that records the peak while a child runs."""
import ctypes, os, re, shutil, subprocess, threading

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---- the shim, from inside the process it is preloaded into ----------------------

def _stats_fields():
    """Field names of struct blockswap_stats, in order, read from the public header
    (every field is a uint64_t), so that this stays right when fields are added."""
    with open(os.path.join(ROOT, "include", "blockswap.h")) as f:
        text = f.read()
    body = re.search(r"struct blockswap_stats \{(.*?)\};", text, re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    return [n for decl in re.findall(r"uint64_t\s+([^;]+);", body)
            for n in (x.strip() for x in decl.split(","))]


class Shim:
    """The preloaded libblockswap's public API, or .loaded False when it is absent."""

    def __init__(self):
        self.lib = ctypes.CDLL(None)
        try:
            self._calls = self.lib.blockswap_hook_calls
            self._get = self.lib.blockswap_get_stats
        except AttributeError:
            self.loaded = False
            return
        self.loaded = True
        self._calls.restype = ctypes.c_int64
        self._calls.argtypes = [ctypes.c_char_p]
        self._fields = _stats_fields()
        self._struct = type("Stats", (ctypes.Structure,),
                            {"_fields_": [(n, ctypes.c_uint64) for n in self._fields]
                             + [("_spare", ctypes.c_uint64 * 16)]})

    def calls(self, hook):
        return int(self._calls(hook.encode())) if self.loaded else None

    def stats(self):
        if not self.loaded:
            return None
        s = self._struct()
        if self._get(ctypes.byref(s)) != 0:
            return None
        return {n: int(getattr(s, n)) for n in self._fields}


LAUNCH_HOOKS = ["cuLaunchKernel", "cuLaunchKernel_ptsz", "cuLaunchKernelEx", "cuLaunchKernelEx_ptsz",
                "cuLaunchCooperativeKernel", "cuLaunchCooperativeKernel_ptsz"]
ALLOC_HOOKS = ["cuMemAlloc_v2", "cuMemAllocPitch_v2", "cuMemAllocAsync", "cuMemAllocAsync_ptsz",
               "cuMemAllocFromPoolAsync", "cuMemAllocFromPoolAsync_ptsz", "cuMemCreate"]


# ---- device memory from outside ----------------------------------------------------

class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                ("used", ctypes.c_ulonglong)]


class _NvmlProc(ctypes.Structure):  # nvmlProcessInfo_t (the _v2/_v3 calls)
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong),
                ("gpuInstanceId", ctypes.c_uint), ("computeInstanceId", ctypes.c_uint)]


class Nvml:
    """Device 0's used memory and per-process use, through NVML; falls back to
    nvidia-smi. .ok is False when neither answers."""

    def __init__(self, index=0):
        self.ok, self.how, self.lib = False, None, None
        try:
            lib = ctypes.CDLL("libnvidia-ml.so.1")
            if lib.nvmlInit_v2() == 0:
                h = ctypes.c_void_p()
                if lib.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(h)) == 0:
                    self.lib, self.h, self.ok, self.how = lib, h, True, "nvml"
        except OSError:
            pass
        if not self.ok and shutil.which("nvidia-smi"):
            self.ok, self.how = True, "nvidia-smi"
        self.index = index

    def used(self):
        """Bytes in use on the device (all processes), or None."""
        if self.how == "nvml":
            m = _NvmlMemory()
            return m.used if self.lib.nvmlDeviceGetMemoryInfo(self.h, ctypes.byref(m)) == 0 else None
        if self.how == "nvidia-smi":
            out = _smi(["--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", str(self.index)])
            return int(out.split()[0]) << 20 if out else None
        return None

    def processes(self):
        """{pid: bytes} of compute processes, or {} when unknown."""
        if self.how == "nvml":
            for fn in ("nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2"):
                f = getattr(self.lib, fn, None)
                if f is None:
                    continue
                n = ctypes.c_uint(64)
                arr = (_NvmlProc * 64)()
                if f(self.h, ctypes.byref(n), arr) == 0:
                    return {arr[i].pid: arr[i].usedGpuMemory for i in range(n.value)}
            return {}
        if self.how == "nvidia-smi":
            out = _smi(["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
            res = {}
            for line in (out or "").splitlines():
                parts = [p.strip() for p in line.split(",")]
                if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                    res[int(parts[0])] = int(parts[1]) << 20
            return res
        return {}


def _smi(args):
    try:
        return subprocess.run(["nvidia-smi"] + args, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None


class PeakSampler(threading.Thread):
    """Samples the device's used memory (and the given pid's, when NVML lists it)
    every `interval` seconds until stop(); .peak_used is the device-wide peak minus
    the baseline taken at start, .peak_pid the process's own peak (None when the
    driver does not list processes, as in some containers)."""

    def __init__(self, nvml, pid=None, interval=0.05):
        super().__init__(daemon=True)
        self.nvml, self.pid, self.interval = nvml, pid, interval
        self.base = nvml.used() or 0
        self.peak_used, self.peak_pid, self.samples = 0, None, 0
        self._stop = threading.Event()

    def run(self):
        while not self._stop.is_set():
            u = self.nvml.used()
            if u is not None:
                self.peak_used = max(self.peak_used, u - self.base)
            if self.pid is not None:
                b = self.nvml.processes().get(self.pid)
                if b is not None:
                    self.peak_pid = max(self.peak_pid or 0, b)
            self.samples += 1
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self.join()
        return {"peak_device_used_delta": self.peak_used, "peak_process": self.peak_pid,
                "samples": self.samples, "how": self.nvml.how}


def have_gpu():
    """(True, description) when an NVIDIA driver with a GPU answers, else (False, why).
    Cheap: loads libcuda.so.1 (or $BS_DRV_LIBCUDA, as tests/gpu/drv.h does) and asks
    for the device count."""
    lib = os.environ.get("BS_DRV_LIBCUDA") or "libcuda.so.1"  # tests name a missing file
    try:
        cu = ctypes.CDLL(lib)
    except OSError as e:
        return False, f"{lib} cannot be loaded ({e})"
    n = ctypes.c_int(0)
    if cu.cuInit(0) != 0 or cu.cuDeviceGetCount(ctypes.byref(n)) != 0 or n.value < 1:
        return False, "the NVIDIA driver found no GPU"
    name = ctypes.create_string_buffer(256)
    dev = ctypes.c_int(0)
    cu.cuDeviceGet(ctypes.byref(dev), 0)
    cu.cuDeviceGetName(name, 256, dev)
    if b"simulated" in name.value:
        return False, "libcuda.so.1 is blockswap's simulated driver (LD_LIBRARY_PATH), not a GPU"
    ver = ctypes.c_int(0)
    cu.cuDriverGetVersion(ctypes.byref(ver))
    return True, f"{name.value.decode()} (driver API {ver.value // 1000}.{ver.value % 1000 // 10})"
