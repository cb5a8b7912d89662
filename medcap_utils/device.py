"""Device capabilities and the precision a run uses (issue 12).

One place decides, for notebooks 02, 03, 05 and 06 and the shared trainer :func:`medcap_utils.training.fit`:

* **Training precision** (:func:`resolve_mixed_precision`): bf16 autocast only on compute capability >= 8.0
  (Ampere and newer have bf16 tensor cores). ``torch.cuda.is_bf16_supported()`` is not the test: it returns
  True on a T4 (cc 7.5), where bf16 runs emulated, slower than fp32. Older GPUs get fp16 autocast, for which
  Accelerate adds a ``GradScaler`` (loss scaling against fp16 gradient underflow); CPUs run fp32.
* **Inference dtype** (:func:`inference_dtype`): fp16 on every GPU, fp32 on CPU (see the function for why fp16).

Whether a model fits the device, and with which batch, is :mod:`medcap_utils.memory`'s question; the usable memory
it compares with is :attr:`DeviceInfo.usable_bytes` (``CUDA_CONTEXT_BYTES`` and ``ALLOCATOR_MARGIN``, sourced there).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

GIB = 2**30
#: bf16 tensor cores arrived with Ampere (cc 8.0); fp16 ones with Volta (cc 7.0)
BF16_MIN_CAPABILITY = (8, 0)
FP16_MIN_CAPABILITY = (7, 0)
CUDA_CONTEXT_BYTES = GIB // 2
ALLOCATOR_MARGIN = 0.10
MIXED_PRECISION_CHOICES = ("auto", "no", "bf16", "fp16")


@dataclass(frozen=True)
class DeviceInfo:
    """What the precision and memory decisions need to know about one device."""

    type: str  # "cuda" | "cpu"
    name: str
    total_bytes: int
    free_bytes: int
    capability: tuple[int, int] | None = None  # CUDA compute capability

    @property
    def bf16(self) -> bool:
        return self.type == "cuda" and self.capability is not None and self.capability >= BF16_MIN_CAPABILITY

    @property
    def usable_bytes(self) -> int:
        reserve = CUDA_CONTEXT_BYTES if self.type == "cuda" else 0
        return int((1 - ALLOCATOR_MARGIN) * max(min(self.total_bytes - reserve, self.free_bytes), 0))

    def describe(self) -> str:
        cc = f"cc {self.capability[0]}.{self.capability[1]}, " if self.capability else ""
        return f"{self.name} ({cc}{self.total_bytes / GIB:.1f} GiB)"


def current_device() -> torch.device:
    """This process's device: its GPU under ``accelerate launch`` (LOCAL_RANK), the first GPU, or the CPU.

    Asking about GPU 0 from every process would open a CUDA context on GPU 0 for each of them."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def device_info(device: str | torch.device | None = None) -> DeviceInfo:
    """Name, compute capability and memory of ``device`` (default: :func:`current_device`)."""
    if device is None:
        device = current_device()
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else 0
        props = torch.cuda.get_device_properties(index)
        free, _ = torch.cuda.mem_get_info(index)
        return DeviceInfo("cuda", props.name, int(props.total_memory), int(free),
                          tuple(torch.cuda.get_device_capability(index)))
    page = os.sysconf("SC_PAGE_SIZE")
    return DeviceInfo("cpu", "CPU", page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES"))


# ----------------------------------------------------------------------------------------------- precision
@dataclass(frozen=True)
class Precision:
    """A resolved mixed-precision setting: ``value`` is what Accelerate gets; ``reason`` says why."""

    requested: str
    value: str  # "no" | "bf16" | "fp16"
    reason: str

    @property
    def changed(self) -> bool:
        return self.requested != self.value

    @property
    def autocast_dtype(self) -> torch.dtype:
        return {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.value]


def resolve_mixed_precision(requested: str = "auto", device: str | torch.device | DeviceInfo | None = None,
                            verbose: bool = True, allow_cpu_autocast: bool = False) -> Precision:
    """What ``mixed_precision`` a run can honestly use on ``device``.

    ``auto``: bf16 on cc >= 8.0, fp16 (+ GradScaler, added by Accelerate) on cc >= 7.0, fp32 below and on CPU.
    An explicit ``bf16`` on a GPU below cc 8.0 falls back to fp16 (never emulated bf16); any mixed precision
    on a CPU falls back to fp32, unless ``allow_cpu_autocast`` (studies of bf16 numerics on a CPU, e.g.
    :mod:`medcap_utils.runner.loss_curves`) keeps an explicit ``bf16``. ``verbose`` prints the reason whenever the
    result differs from the request.
    """
    if requested not in MIXED_PRECISION_CHOICES:
        raise ValueError(f"mixed_precision={requested!r}; expected one of {MIXED_PRECISION_CHOICES}")
    info = device if isinstance(device, DeviceInfo) else device_info(device)
    where = info.describe()
    cc = info.capability
    if requested == "no":
        result = Precision(requested, "no", f"fp32 as asked on {where}")
    elif info.type != "cuda" and allow_cpu_autocast and requested == "bf16":
        result = Precision(requested, "bf16", f"bf16 autocast on {where} as asked (allow_cpu_autocast)")
    elif info.type != "cuda":
        result = Precision(requested, "no", f"mixed_precision={requested!r} on {where}: fp32 (mixed precision is "
                                            "for GPUs; CPU autocast would only slow this run down)")
    elif info.bf16:
        value = "fp16" if requested == "fp16" else "bf16"
        why = "as asked" if requested == value else f"cc >= {BF16_MIN_CAPABILITY[0]}.0 has bf16 tensor cores"
        result = Precision(requested, value, f"mixed_precision={requested!r} on {where}: {value} ({why})")
    elif cc is not None and cc >= FP16_MIN_CAPABILITY or requested == "fp16":
        why = ("as asked" if requested == "fp16" else
               f"compute capability {cc[0]}.{cc[1]} < 8.0 has no bf16 tensor cores (torch.cuda.is_bf16_supported() "
               "may say True, through slow emulation); fp16 with a GradScaler instead")
        result = Precision(requested, "fp16", f"mixed_precision={requested!r} on {where}: fp16 ({why})")
    else:  # pre-Volta: no tensor cores, fp16 buys no speed and adds loss-scaling risk
        result = Precision(requested, "no", f"mixed_precision={requested!r} on {where}: fp32 (compute capability "
                                            f"{cc[0]}.{cc[1]} < 7.0 has no tensor cores)")
    if verbose and result.changed:
        print(result.reason)
    return result


def inference_dtype(device: str | torch.device | DeviceInfo | None = None) -> torch.dtype:
    """Weights dtype for zero-shot / captioning inference: fp16 on any GPU, fp32 on CPU.

    fp16 rather than bf16 even where bf16 is native: (1) it is what the authors' code ran (LAVIS loads BLIP-2's
    ViT and OPT and InstructBLIP's Vicuna in fp16), (2) fp16 keeps 3 more mantissa bits, so captions stay closer
    to fp32 ones, and these checkpoints do not overflow in fp16, and (3) one dtype on every GPU gives the same
    captions on a T4 and an A100. CPUs lack fast half-precision matmuls, hence fp32 there.
    """
    info = device if isinstance(device, DeviceInfo) else device_info(device)
    return torch.float16 if info.type == "cuda" else torch.float32
