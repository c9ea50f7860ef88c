"""Q-learning controller: Bellman updates, ε-greedy, rewards, bounds, state round trips, and
the Lightning callback on a tiny two-optimiser manual-optimisation run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from framecast.errors import TrainingError
from framecast.training.q_controller import (
    KLAction,
    KLQController,
    QAction,
    QController,
    QControllerCallback,
    QControllerConfig,
    apply_to_optimizer,
)

STEADY = {"recon": 1.0, "g_total": 1.0, "d_total": 0.5, "g_adv": 0.7, "kl": 1.0}


def _losses(step: int) -> dict[str, float]:
    """A short, slightly noisy, improving run."""
    return {
        "recon": 1.0 / (1 + 0.1 * step) + 0.01 * math.sin(step),
        "g_total": 1.5,
        "d_total": 0.6 + 0.2 * math.sin(0.7 * step),
        "g_adv": 0.8,
        "kl": 2.0 - 0.05 * step,
    }


# -- the tabular learner --------------------------------------------------------------------


def test_update_matches_hand_computed_bellman_values() -> None:
    controller = QController(QControllerConfig(learning_rate=0.5, discount=0.9), "gen")
    a, b = "trend=2,band=1,osc=0", "trend=1,band=1,osc=0"
    controller.update(a, {"lr_scale": 0, "momentum_scale": 2}, 1.0, b)
    # Q(a)[0] = 0 + 0.5 (1 + 0.9·0 − 0) = 0.5
    controller.update(b, {"lr_scale": 3, "momentum_scale": 2}, 2.0, a)
    # Q(b)[3] = 0.5 (2 + 0.9·max Q(a) = 0.9·0.5) = 1.225; momentum head: same with Q(a)[2]
    controller.update(a, {"lr_scale": 0, "momentum_scale": 4}, -1.0, b)
    # Q(a)[0] = 0.5 + 0.5 (−1 + 0.9·1.225 − 0.5) = 0.30125
    assert controller.q_table[a]["lr_scale"] == pytest.approx([0.30125, 0, 0, 0, 0])
    assert controller.q_table[b]["lr_scale"] == pytest.approx([0, 0, 0, 1.225, 0])
    assert controller.q_table[b]["momentum_scale"] == pytest.approx([0, 0, 1.225, 0, 0])
    # Q(a)[4] momentum = 0.5 (−1 + 0.9·1.225) = 0.05125
    assert controller.q_table[a]["momentum_scale"] == pytest.approx([0, 0, 0.5, 0, 0.05125])


def test_epsilon_decays_geometrically_to_its_minimum() -> None:
    config = QControllerConfig(epsilon=0.5, epsilon_decay=0.9, epsilon_min=0.1)
    controller = QController(config, "disc")
    for n in range(1, 40):
        controller.decide(STEADY)
        assert controller.epsilon == pytest.approx(max(0.1, 0.5 * 0.9**n))
    assert controller.epsilon == 0.1


def test_greedy_action_with_zero_epsilon() -> None:
    controller = QController(QControllerConfig(epsilon=0.0, epsilon_min=0.0), "gen")
    controller.decide(STEADY)  # fills the history; the state is now fixed by STEADY
    state = controller.observe().key
    controller.q_values(state)["lr_scale"][4] = 1.0
    controller.q_values(state)["momentum_scale"][0] = 0.5
    for _ in range(5):
        controller._previous = None  # no learning in between: the table stays as set
        assert controller.decide(STEADY) == QAction(lr_scale=1.2, momentum_scale=0.95)


def test_same_seed_same_decisions() -> None:
    config = QControllerConfig(seed=7)
    first, second = QController(config, "gen"), QController(config, "gen")
    runs = [[c.decide(_losses(i)) for i in range(30)] for c in (first, second)]
    assert runs[0] == runs[1]
    other = QController(QControllerConfig(seed=8), "gen")
    assert [other.decide(_losses(i)) for i in range(30)] != runs[0]


# -- rewards ----------------------------------------------------------------------------------


def test_nonfinite_loss_gets_the_big_penalty() -> None:
    config = QControllerConfig(nonfinite_penalty=5.0)
    gen, disc, kl = QController(config, "gen"), QController(config, "disc"), KLQController(config)
    history = {"recon": [1.0, 0.9], "g_total": [1.0, math.nan], "d_total": [0.7, 0.7]}
    assert gen.reward(history) == -5.0
    assert disc.reward({"d_total": [0.7, math.inf], "g_adv": [0.7, 0.7]}) == -5.0
    assert kl.reward({"recon": [1.0, 0.9], "kl": [1.0, -math.inf]}) == -5.0
    # Larger than any finite reward can go.
    best = gen.reward({"recon": [1.0, 0.1], "g_total": [1.0, 1.0], "d_total": [0.7, 0.7]})
    assert -5.0 < -best


def test_improving_reconstruction_beats_worsening() -> None:
    gen = QController(QControllerConfig(), "gen")
    common = {"g_total": [1.0] * 3, "d_total": [0.5] * 3}
    improving = gen.reward({"recon": [1.0, 0.95, 0.9], **common})
    worsening = gen.reward({"recon": [0.9, 0.95, 1.0], **common})
    assert improving > 0 > worsening
    # The discriminator's band counts for the generator too.
    out_of_band = gen.reward({"recon": [1.0, 0.95, 0.9], "g_total": [1.0] * 3, "d_total": [0.05]})
    assert out_of_band < improving
    kl = KLQController(QControllerConfig())
    assert kl.reward({"recon": [1.0, 0.9], "kl": [2.0, 1.9]}) > kl.reward(
        {"recon": [1.0, 0.9], "kl": [2.0, 2.4]}
    )


def test_oscillating_losses_are_penalised() -> None:
    disc = QController(QControllerConfig(oscillation_penalty=0.5), "disc")
    g_adv = {"g_adv": [0.7] * 5}
    steady = disc.reward({"d_total": [0.5, 0.5, 0.5, 0.5, 0.5], **g_adv})
    zigzag = disc.reward({"d_total": [0.35, 0.6, 0.35, 0.6, 0.5], **g_adv})
    assert steady == pytest.approx(0.5)  # in band, nothing else
    assert zigzag == pytest.approx(0.5 - 0.5)  # every pair of differences flips sign
    # Small wiggles are noise, not oscillation.
    assert disc.reward({"d_total": [0.500, 0.501, 0.500, 0.501, 0.500], **g_adv}) == steady
    # The state flags it too.
    for value in (0.5, 0.9, 0.5, 0.9):
        disc.decide({"d_total": value, "g_adv": 0.7})
    assert disc.observe().oscillating


def test_disc_penalised_when_generator_collapses_or_explodes() -> None:
    disc = QController(QControllerConfig(g_adv_band=(0.1, 3.0)), "disc")
    healthy = disc.reward({"d_total": [0.5], "g_adv": [0.7]})
    assert disc.reward({"d_total": [0.5], "g_adv": [0.01]}) < healthy
    assert disc.reward({"d_total": [0.5], "g_adv": [9.0]}) < healthy


def test_the_guides_healthy_band_and_its_guessing_plateau() -> None:
    """Users' document 004: "`D_tot` should stabilize, ideally in the 0.3 - 0.65 range",
    and "Discriminator Loss Stays at ~0.69 (Guessing)" is a problem to leave."""
    config = QControllerConfig()
    assert config.d_loss_band == (0.3, 0.65)
    g_adv = {"g_adv": [0.7] * 5}
    for role in ("gen", "disc"):
        controller = QController(config, role)
        recon = {"recon": [1.0] * 5, "g_total": [1.0] * 5}

        def reward(d_total, c=controller, recon=recon):
            return c.reward({"d_total": d_total, **recon, **g_adv})

        healthy, guessing = reward([0.5] * 5), reward([0.69, 0.69, 0.70, 0.70, 0.70])
        above = reward([0.8] * 5)  # out of band, not the guessing level
        passing = reward([0.5, 0.5, 0.5, 0.5, 0.69])  # one visit is not a plateau
        assert healthy > above == passing > guessing, role
        assert healthy - guessing == pytest.approx(2 * config.band_weight + config.guessing_penalty)
    hinge = config.for_hinge()  # guessing is 1.0 for the hinge loss
    assert hinge.guessing_level == pytest.approx(1.0)
    assert hinge.d_loss_band == pytest.approx((0.3 / math.log(2), 0.65 / math.log(2)))


# -- bounds -----------------------------------------------------------------------------------


def test_actions_stay_inside_the_bounds() -> None:
    config = QControllerConfig(max_lr=1e-2, min_lr=1e-7, max_momentum=0.999, min_momentum=0.5)
    param = nn.Parameter(torch.zeros(1))
    adam = torch.optim.Adam([param], lr=1e-3, betas=(0.9, 0.99))
    sgd = torch.optim.SGD([param], lr=1e-3, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(sgd, lambda step: 1.0)
    for _ in range(100):
        a = apply_to_optimizer(adam, QAction(1.2, 1.02), config)
        s = apply_to_optimizer(sgd, QAction(1.2, 1.02), config, sched)
    assert a.lr == pytest.approx(1e-2) and a.momentum == pytest.approx(0.999)
    assert adam.param_groups[0]["betas"][1] == 0.99  # β2 untouched
    assert s.lr == pytest.approx(1e-2) and sched.base_lrs[0] == pytest.approx(1e-2)
    for _ in range(200):
        a = apply_to_optimizer(adam, QAction(0.8, 0.95), config)
    assert a.lr == pytest.approx(1e-7) and a.momentum == pytest.approx(0.5)
    kl = KLQController(QControllerConfig(kl_min=1e-6, kl_max=1.0))
    weight = 0.5
    for _ in range(50):
        weight = kl.apply(weight, KLAction(1.25))
    assert weight == 1.0
    for _ in range(100):
        weight = kl.apply(weight, KLAction(0.8))
    assert weight == pytest.approx(1e-6)


# -- state round trips -------------------------------------------------------------------------


def test_state_dict_round_trip(tmp_path: Path) -> None:
    config = QControllerConfig(seed=3)
    original, kl = QController(config, "gen"), KLQController(config)
    for i in range(12):
        original.decide(_losses(i))
        kl.apply(0.1, kl.decide(_losses(i)))
    state = original.state_dict()
    json.dumps(state)
    json.dumps(kl.state_dict())
    torch.save({"gen": state, "kl": kl.state_dict()}, tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt", weights_only=True)
    assert loaded["gen"] == json.loads(json.dumps(state))

    restored, restored_kl = QController(QControllerConfig(seed=99), "gen"), KLQController(config)
    restored.load_state_dict(loaded["gen"])
    restored_kl.load_state_dict(loaded["kl"])
    assert restored_kl.kl_weight == kl.kl_weight
    for i in range(12, 30):
        assert restored.decide(_losses(i)) == original.decide(_losses(i))
        assert restored_kl.decide(_losses(i)) == kl.decide(_losses(i))
    assert restored.state_dict() == original.state_dict()


def test_config_dict_round_trip() -> None:
    config = QControllerConfig(lr_scale_options=(0.5, 1.0, 2.0), seed=4)
    as_dict = config.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert QControllerConfig.from_dict(as_dict) == config


# -- the Lightning callback --------------------------------------------------------------------


class RecordingLogger(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.history: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.history.append((step, dict(metrics)))

    def values(self, key: str) -> list[float]:
        return [metrics[key] for _, metrics in self.history if key in metrics]


def _decay(step: int) -> float:
    return 1.0 / (1.0 + 0.1 * step)


class TinyGan(pl.LightningModule):
    """Manual optimisation, Adam generator + SGD discriminator, each with a LambdaLR."""

    def __init__(self, log_recon: bool = True):
        super().__init__()
        self.automatic_optimization = False
        self.generator = nn.Linear(4, 4)
        self.discriminator = nn.Linear(4, 1)
        self.kl_weight = 1e-3
        self.log_recon = log_recon

    def training_step(self, batch, batch_idx):
        (x,) = batch
        opt_g, opt_d = self.optimizers()
        sched_g, sched_d = self.lr_schedulers()
        fake = self.generator(x)
        recon = (fake - x).pow(2).mean()
        g_adv = nn.functional.softplus(-self.discriminator(fake)).mean()
        kl = fake.pow(2).mean()
        g_total = recon + 0.1 * g_adv + self.kl_weight * kl
        opt_g.zero_grad()
        self.manual_backward(g_total)
        opt_g.step()
        sched_g.step()
        d_total = 0.5 * (
            nn.functional.softplus(-self.discriminator(x)).mean()
            + nn.functional.softplus(self.discriminator(fake.detach())).mean()
        )
        opt_d.zero_grad()
        self.manual_backward(d_total)
        opt_d.optimizer.step()  # one global step per batch, as the autoencoder does
        sched_d.step()
        logs = {"g_adv": g_adv, "g_total": g_total, "d_total": d_total, "kl": kl}
        if self.log_recon:
            logs["recon"] = recon
        for name, value in logs.items():
            self.log(f"train/loss_{name}", value.detach())

    def configure_optimizers(self):
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=1e-3, betas=(0.9, 0.99))
        opt_d = torch.optim.SGD(self.discriminator.parameters(), lr=1e-2, momentum=0.9)
        return [opt_g, opt_d], [
            {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt_g, _decay), "interval": "step"},
            {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt_d, _decay), "interval": "step"},
        ]


def _trainer(tmp_path: Path, callback: QControllerCallback, logger: Logger | None = None):
    return pl.Trainer(
        default_root_dir=tmp_path,
        max_steps=6,
        accelerator="cpu",
        devices=1,
        logger=logger or False,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        callbacks=[callback],
    )


def _data() -> DataLoader:
    torch.manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(48, 4)), batch_size=8)


def test_callback_end_to_end(tmp_path: Path) -> None:
    config = QControllerConfig(epsilon=1.0, epsilon_min=1.0, seed=1)  # forced exploration
    callback = QControllerCallback(config, every_n_steps=2, control_kl=True)
    logger = RecordingLogger()
    module = TinyGan()
    trainer = _trainer(tmp_path, callback, logger)
    trainer.fit(module, _data())

    gen_scales = logger.values("q_ctrl_gen/lrscale")
    disc_scales = logger.values("q_ctrl_disc/lrscale")
    assert len(gen_scales) == len(disc_scales) == 3  # decisions at steps 2, 4, 6
    assert len(logger.values("q_ctrl_gen/reward")) == 2  # from the second decision on
    # Logged once per decision, at the logger steps of those batches' own metrics.
    decision_steps = [step for step, m in logger.history if "q_ctrl_gen/lrscale" in m]
    recon_steps = [step for step, m in logger.history if "train/loss_recon" in m]
    assert decision_steps == recon_steps[1::2] == [1, 3, 5]
    assert logger.values("q_ctrl_kl/kl_weight")[-1] == pytest.approx(module.kl_weight)
    # Six scheduler steps after construction; the controller's factors survive them.
    opt_g, opt_d = trainer.optimizers
    expected_g = 1e-3 * math.prod(gen_scales) * _decay(6)
    expected_d = 1e-2 * math.prod(disc_scales) * _decay(6)
    assert opt_g.param_groups[0]["lr"] == pytest.approx(expected_g)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(expected_d)
    assert logger.values("q_ctrl_gen/lr")[-1] == pytest.approx(expected_g)
    # Some factor other than 1 was drawn, so the check above is not vacuous.
    assert any(s != 1.0 for s in gen_scales + disc_scales)
    momentum = 0.9 * math.prod(logger.values("q_ctrl_disc/momentumscale"))
    assert opt_d.param_groups[0]["momentum"] == pytest.approx(momentum)

    # Checkpoint: the state is in it, loads with weights_only, and restores a fresh callback.
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    saved = checkpoint["callbacks"][callback.state_key]
    assert saved == callback.state_dict()
    fresh = QControllerCallback(config, every_n_steps=2, control_kl=True)
    fresh.load_state_dict(saved)
    assert fresh.state_dict() == callback.state_dict()
    # On resume the KL weight (a plain attribute, not in the checkpoint) comes back.
    resumed = TinyGan()
    fresh.on_train_start(trainer, resumed)
    assert resumed.kl_weight == module.kl_weight != TinyGan().kl_weight


def test_callback_missing_metric_raises_clear_error(tmp_path: Path) -> None:
    callback = QControllerCallback(QControllerConfig(), every_n_steps=2)
    trainer = _trainer(tmp_path, callback)
    with pytest.raises(TrainingError, match=r"train/loss_recon.*train/loss_d_total"):
        trainer.fit(TinyGan(log_recon=False), _data())
