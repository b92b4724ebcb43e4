"""Machine identity (harness/machine.py): the hardware class and precision policy a trial
records in its device string, and reading old and new device strings back."""
from __future__ import annotations

import torch

from harness import machine
from harness.machine import (DeviceInfo, class_label, cpu_info, device_label, effective_precision,
                             machine_class, parse_device, policy_label, precision_policy)

SAPPHIRE = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_2 avx fma avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8 ht
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_2 avx fma avx2
"""
GRAVITON = "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd sve sve2 bf16 i8mm\nCPU part\t: 0xd4f\n"


def test_cpu_info_reads_model_and_kernel_isa_flags():
    """The model name and the ISA flags that change kernels, in ISA_FLAGS order, from the
    first processor; Arm's 'Features' line too (no model name: the platform's)."""
    info = cpu_info(SAPPHIRE)
    assert info == {"model": "Intel(R) Xeon(R) Platinum 8480+",
                    "isa": ["fma", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                            "amx_tile", "amx_bf16", "amx_int8"]}
    arm = cpu_info(GRAVITON)
    assert arm["isa"] == ["asimd", "sve", "sve2", "bf16", "i8mm"] and arm["model"]


def test_labels_name_the_class_and_the_policy():
    """CPU: model [isa] dispatch xthreads; CUDA: card, sm, driver, CUDA, cuDNN; TF32 shows
    only on cards that have it; oneDNN lowering fp32 shows on CPUs."""
    cpu = {"kind": "cpu", "model": "Xeon", "isa": ["avx2", "amx_bf16"], "capability": "AVX512",
           "threads": 1}
    assert class_label(cpu) == "cpu:Xeon [avx2 amx_bf16] AVX512 x1"
    gpu = {"kind": "cuda", "name": "NVIDIA H200", "capability": "9.0", "driver": "570.86",
           "cuda": "13.0", "cudnn": 92400}
    assert class_label(gpu) == "cuda:NVIDIA H200 sm9.0 driver 570.86 cuda 13.0 cudnn 92400"
    on = {"matmul_tf32": True, "cudnn_tf32": True}
    assert policy_label(gpu, on) == "tf32=matmul,cudnn"
    assert policy_label(gpu, {"matmul_tf32": False, "cudnn_tf32": True}) == "tf32=cudnn"
    assert policy_label(gpu, {}) == "tf32=off"
    assert policy_label(dict(gpu, capability="7.0"), on) == "tf32=n/a"  # V100: no TF32
    assert policy_label(cpu, {"cpu_fp32": {"matmul": "none", "conv": "ieee"}}) == "fp32=ieee"
    assert policy_label(cpu, {"cpu_fp32": {"matmul": "bf16", "conv": "none"}}) == "fp32=matmul:bf16"


def test_this_machine_round_trips():
    """device_label of this CPU parses back into its class and policy (not legacy)."""
    label = device_label("cpu")
    info = parse_device(label)
    assert info == DeviceInfo(class_label(machine_class("cpu")), "fp32=ieee", "cpu", False)
    assert f"x{torch.get_num_threads()}" in info.hardware
    pol = precision_policy()
    assert set(pol) == {"matmul_tf32", "cudnn_tf32", "float32_matmul_precision", "cpu_fp32"}
    rec = machine.machine_record("cpu")
    assert rec["class"] == info.hardware and rec["machine"]["kind"] == "cpu"


def test_legacy_device_strings_and_effective_precision():
    """Strings written before harness.machine are legacy; the effective precision adds the
    policy when it lowers fp32, and marks TF32 unknown for legacy CUDA strings."""
    assert parse_device("cpu:x86_64 x1") == DeviceInfo("cpu:x86_64 x1", None, "cpu", True)
    assert parse_device("cuda:NVIDIA H100 80GB HBM3").kind == "cuda"
    assert parse_device(None) is None
    cpu = parse_device("cpu:Xeon [avx2] AVX2 x1 | fp32=ieee")
    gpu = parse_device("cuda:NVIDIA H200 sm9.0 driver 1 cuda 13.0 cudnn 9 | tf32=cudnn")
    assert effective_precision("bf16", cpu) == "bf16"
    assert effective_precision("fp32", gpu) == "fp32+tf32=cudnn"
    assert effective_precision("fp32", parse_device("cuda:NVIDIA H100")) == "fp32+tf32=?"
    assert effective_precision(None, cpu) is None
