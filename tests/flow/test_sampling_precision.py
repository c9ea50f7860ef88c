"""bf16 sampling: the regressor under bf16 autocast, the ODE state in fp32."""

from __future__ import annotations

import pytest
import torch

from framecast.flow.path import CondOTPath
from framecast.flow.sampling import SamplerConfig, rollout
from framecast.flow.solvers import SolverConfig
from framecast.models.river import VectorFieldRegressor

PATH = CondOTPath(1e-7)
# Measured on this tiny model: bf16 rollouts of 3 frames, 10 Euler steps each, differ from
# fp32 by ~0.5 % of the latents' spread (max ~2 %); the bound leaves room for other CPUs.
RELATIVE_TOLERANCE = 0.05


def tiny_model() -> VectorFieldRegressor:
    torch.manual_seed(0)
    model = VectorFieldRegressor(4, (4, 4), inner_dim=64, depth=1, mid_depth=1, num_heads=4)
    with torch.no_grad():  # a non-trivial field instead of the zero-initialised head
        model.head.weight.normal_(0.0, 0.2)
        model.head.bias.normal_(0.0, 0.2)
    return model.eval()


def sample(model, precision: str, dtype=torch.float32):
    context = torch.randn(2, 2, 4, 4, 4, generator=torch.Generator().manual_seed(3), dtype=dtype)
    sampler = SamplerConfig(SolverConfig("euler", 10), precision=precision)
    return rollout(
        model, context, 3, PATH, sampler, samples=2, generator=torch.Generator().manual_seed(4)
    )


def test_bf16_rollout_agrees_with_fp32_within_tolerance():
    model = tiny_model()
    fp32, bf16 = sample(model, "fp32"), sample(model, "bf16")
    assert bf16.latents.dtype == torch.float32  # the state and the output stay fp32
    assert bf16.nfe_total == fp32.nfe_total
    error = (bf16.latents - fp32.latents).abs()
    spread = fp32.latents.std()
    assert error.max() > 0  # bf16 really ran: the switch is not a no-op
    assert error.mean() / spread < RELATIVE_TOLERANCE / 5
    assert error.max() / spread < RELATIVE_TOLERANCE


def test_bf16_keeps_the_state_dtype_of_the_context():
    seen = []

    def field(x, z_ref, z_ctx, tau, t):
        seen.append(x.dtype)
        return torch.zeros_like(x)

    out = rollout(field, torch.zeros(1, 1, 2, 2, 2), 2, PATH, SamplerConfig(precision="bf16"))
    assert set(seen) == {torch.float32} and out.latents.dtype == torch.float32


def test_precision_is_saved_described_and_validated():
    sampler = SamplerConfig(precision="bf16")
    assert SamplerConfig.from_dict(sampler.to_dict()) == sampler
    assert "bf16 velocity" in sampler.describe()
    assert "bf16" not in SamplerConfig().describe()
    assert SamplerConfig().precision == "fp32"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, got 'fp16'"):
        SamplerConfig(precision="fp16")


def test_cli_precision_flag_reaches_the_sampler():
    from framecast.cli import _sampler, build_parser

    parser = build_parser()
    for command in ("generate", "evaluate"):
        base = [command, "--run", "r", "--data" if command == "evaluate" else "--input", "d"]
        if command == "generate":
            base += ["--out", "o.gif"]
        # auto by default: bf16 where the hardware computes it natively, else fp32.
        assert _sampler(parser.parse_args(base)).precision == "auto"
        assert _sampler(parser.parse_args([*base, "--precision", "fp32"])).precision == "fp32"
        with pytest.raises(SystemExit):
            parser.parse_args([*base, "--precision", "fp16"])


@pytest.mark.parametrize("cpu, expected", [("AVX2_EPYC", "fp32"), ("AMX_XEON", "bf16")])
def test_auto_becomes_what_the_device_computes_fast(fake_hardware, cpu, expected):
    """The saved sampler records what ran, not 'auto'; rollout resolves it too."""
    fake_hardware.use(cpu=getattr(fake_hardware, cpu))
    sampler = SamplerConfig(precision="auto")
    assert "precision auto" in sampler.describe()
    resolved = sampler.for_device("cpu")
    assert resolved.precision == expected
    assert SamplerConfig.from_dict(resolved.to_dict()) == resolved


def test_explicit_bf16_on_emulating_hardware_warns(fake_hardware):
    fake_hardware.use(cpu=fake_hardware.AVX2_EPYC, probe=fake_hardware.EMULATED)
    with pytest.warns(UserWarning, match="68× slower"):
        assert SamplerConfig(precision="bf16").for_device("cpu").precision == "bf16"
