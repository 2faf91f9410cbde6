"""benchmarks/profile_kernels.py: where sampling's and training's device time goes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from script_helpers import script_env

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "profile_kernels.py"


@pytest.fixture(scope="module")
def profile_kernels():
    spec = importlib.util.spec_from_file_location("profile_kernels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("name", "kind"),
    [  # kernel names as an H100/H200 profile of the UNet shows them
        (
            "sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128",
            "convolution",
        ),
        ("sm90_xmma_wgrad_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc", "convolution"),
        ("sm90_xmma_dgrad_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc", "convolution"),
        ("void cudnn::engines_precompiled::nchwToNhwcKernel<__nv_bfloat16>", "convolution"),
        ("nvjet_hsh_128x256_64x4_1x2_h_bz_coopA_NNT", "matmul"),
        ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "matmul"),
        ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128>>", "attention"),
        ("fmha_cutlassF_bf16_aligned_64x64_rf_sm80", "attention"),
        ("triton_per_fused_convolution_native_group_norm_silu_3", "fused"),
        ("triton_tem_fused_convolution_0", "convolution"),
        ("triton_tem_fused_mm_4", "matmul"),
        ("void at::native::multi_tensor_apply_kernel<FusedAdamMathFunctor<float, 4>>", "optimizer"),
        ("Memcpy DtoD (Device -> Device)", "copy"),
        (
            "void at::native::vectorized_elementwise_kernel<4, at::native::silu_kernel>",
            "elementwise",
        ),
        ("aten::mkldnn_convolution", "convolution"),
        ("aten::addmm", "matmul"),
    ],
)
def test_kernels_are_sorted_by_what_they_compute(profile_kernels, name, kind):
    assert profile_kernels.kind_of(name) == kind


def test_smoke_profiles_sampling_and_training_by_kind(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        env=script_env(tmp_path / "xdg"),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sample, train = json.loads(out.read_text())
    assert sample["title"].startswith("sample: dpmsolver++ 25 steps, guidance 3")
    assert train["title"].startswith("train: batch 4")
    for report in (sample, train):
        kinds = {r["kind"]: r for r in report["kinds"]}
        assert sum(r["share"] for r in kinds.values()) == pytest.approx(1.0, abs=1e-6)
        assert 0 < report["busy s"] <= report["wall s"]
        # the UNet is convolutions: they hold most of the FLOPs and a large share of the time
        assert report["flops"]["convolution"] > 10 * report["flops"]["attention"] > 0
        assert kinds["convolution"]["share"] > 0.2 and kinds["convolution"]["TFLOP/s"] > 0
    assert {r["kind"]: r for r in train["kinds"]}["optimizer"]["calls"] > 0  # AdamW's step
    # norms, activations and adds move memory: at least the 16x16 fp32 output of the UNet
    assert sample["eager traffic per eval"] > 3 * 16 * 16 * 4
    assert "| convolution |" in proc.stdout and "top operators:" in proc.stdout


def test_gpu_time_is_the_kernels_own_counted_once(profile_kernels):
    """The operator that launched a kernel, and inductor's launch event named after its
    Triton kernel, carry the kernel's time too: only the device events count."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    def event(name, device_type, us):
        cpu_us = 0 if device_type == DeviceType.CUDA else 5
        return SimpleNamespace(
            name=name, device_type=device_type, device_time_total=us, self_cpu_time_total=cpu_us
        )

    events = [
        event("aten::convolution", DeviceType.CPU, 700),
        event("sm90_xmma_fprop_implicit_gemm_bf16", DeviceType.CUDA, 700),
        event("triton_per_fused_native_group_norm_silu_0", DeviceType.CPU, 200),
        event("triton_per_fused_native_group_norm_silu_0", DeviceType.CUDA, 200),
        event("triton_per_fused_native_group_norm_silu_0", DeviceType.CUDA, 100),
    ]
    prof = SimpleNamespace(events=lambda: events)
    times = profile_kernels.device_times(prof, cuda=True)
    assert times["convolution"][:2] == (1, pytest.approx(700e-6))
    assert times["fused"][:2] == (2, pytest.approx(300e-6))
    assert set(times) == {"convolution", "fused"}
    on_cpu = profile_kernels.device_times(prof, cuda=False)  # operators' self times
    assert on_cpu["convolution"][:2] == (1, pytest.approx(5e-6))
