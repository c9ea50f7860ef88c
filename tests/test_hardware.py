"""The precision rule on every branch, with the hardware monkeypatched (framecast.hardware).

Real machines differ from one session to the next (AMX Xeons, AVX512-BF16 EPYCs, AVX2-only
EPYCs and laptops, H200s, V100s): each class is faked here (``fake_hardware``, conftest)
through the three readers the rule uses, so every branch runs on any CI box.
"""

from __future__ import annotations

import pytest

from framecast import hardware
from framecast.hardware import bf16_support, resolve_sampling_precision, resolve_training_precision


@pytest.mark.parametrize(
    "cpu, expected",
    [
        ("AMX_XEON", "bf16-mixed"),
        ("BF16_EPYC", "bf16-mixed"),
        ("AVX2_EPYC", "32"),
        ("AVX512_NO_BF16", "32"),
    ],
)
def test_cpu_flags_decide_without_a_probe(fake_hardware, cpu, expected):
    cpu = getattr(fake_hardware, cpu)
    fake_hardware.use(cpu=cpu)
    choice = resolve_training_precision("auto", "cpu")
    assert choice.value == expected and choice.warning is None
    assert cpu.capability in choice.reason  # the hardware class is named
    assert fake_hardware.probes == []


@pytest.mark.parametrize("cpu", ["OLD_TORCH", "ARM", "CAPPED", "ISA_LIMIT"])
@pytest.mark.parametrize("probe, expected", [("EMULATED", "32"), ("NATIVE", "bf16-mixed")])
def test_unclear_flags_are_settled_by_a_probe(fake_hardware, cpu, probe, expected):
    fake_hardware.use(cpu=getattr(fake_hardware, cpu), probe=getattr(fake_hardware, probe))
    choice = resolve_training_precision("auto", "cpu")
    assert fake_hardware.probes == ["cpu"]
    assert choice.value == expected
    assert "measured bf16 matmul" in choice.reason


@pytest.mark.parametrize("gpu", ["H200", "A100"])
def test_gpus_with_bf16(fake_hardware, gpu):
    fake_hardware.use(gpu=getattr(fake_hardware, gpu))
    assert resolve_training_precision("auto", "cuda:0").value == "bf16-mixed"
    assert resolve_sampling_precision("auto", "cuda:0").value == "bf16"


def test_v100_takes_fp16_where_the_kind_has_a_loss_scaler_and_fp32_elsewhere(fake_hardware):
    fake_hardware.use(gpu=fake_hardware.V100)
    choice = resolve_training_precision("auto", "cuda", fp16_supported=True)
    assert choice.value == "16-mixed"
    assert "sm70" in choice.reason and "no bf16" in choice.reason
    by_hand = resolve_training_precision("auto", "cuda", fp16_supported=False)
    assert by_hand.value == "32" and "by hand" in by_hand.reason
    # A velocity evaluation has no loss to scale: sampling stays fp32 there.
    assert resolve_sampling_precision("auto", "cuda").value == "fp32"


def test_gpus_without_tensor_cores_train_in_fp32(fake_hardware):
    fake_hardware.use(gpu=fake_hardware.P100)
    assert resolve_training_precision("auto", "cuda").value == "32"


def test_explicit_bf16_on_emulating_hardware_runs_with_the_measured_slowdown(fake_hardware):
    fake_hardware.use(cpu=fake_hardware.AVX2_EPYC, probe=fake_hardware.EMULATED)
    choice = resolve_training_precision("bf16-mixed", "cpu")
    assert choice.value == "bf16-mixed"
    assert "68× slower" in choice.warning and "'auto'" in choice.warning
    sampling = resolve_sampling_precision("bf16", "cpu")
    assert sampling.value == "bf16" and "68× slower" in sampling.warning


def test_explicit_choices_on_native_hardware_are_kept_silently(fake_hardware):
    fake_hardware.use(cpu=fake_hardware.AMX_XEON)
    for requested in ("32", "bf16-mixed", "16-mixed"):
        choice = resolve_training_precision(requested, "cpu")
        assert choice.value == requested and choice.warning is None
    assert resolve_sampling_precision("fp32", "cpu").value == "fp32"


def test_bad_values_name_the_allowed_ones():
    with pytest.raises(ValueError, match="auto, 32, bf16-mixed, 16-mixed, got 'bf16'"):
        resolve_training_precision("bf16")
    with pytest.raises(ValueError, match="auto, fp32, bf16, got 'fp16'"):
        resolve_sampling_precision("fp16")


def test_the_real_machine_is_classified():
    """Whatever this CI box is, the rule gives an answer and names the hardware."""
    support = bf16_support("cpu")
    assert support.hardware.startswith("CPU with")
    assert resolve_training_precision("auto").value in ("32", "bf16-mixed")


def test_probe_measures_both_rates():
    hardware._probe_matmul_cached.cache_clear()
    probe = hardware.probe_matmul("cpu")
    assert probe.fp32_gflops > 0 and probe.bf16_gflops > 0
    assert "GFLOP/s" in probe.describe()
