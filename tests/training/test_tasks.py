"""The table of trainable kinds: every entry builds, every config kind has one, no circle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from framecast.config.loader import read_yaml
from framecast.config.schema import ModelConfig
from framecast.errors import ConfigError
from framecast.training import resolve_run_config
from framecast.training.task import Task, keep_config
from framecast.training.tasks import KINDS, get_task

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_every_model_kind_has_a_task():
    import framecast.config  # noqa: F401  (registers the config schemas)

    # (Other tests may register throwaway config kinds; the shipped ones all train.)
    assert set(KINDS) == {"autoencoder", "river", "vaegan", "simvp", "motion"}
    assert set(KINDS) <= set(ModelConfig.registry)
    for kind in KINDS:
        assert isinstance(get_task(kind), Task), kind


def test_unknown_kind_names_the_trainable_ones():
    with pytest.raises(ConfigError, match="'nope' cannot be trained; trainable kinds: autoencoder"):
        get_task("nope")


def test_kinds_do_not_import_the_table():
    """A kind's module imports Task from training.task, never the table that lists it."""
    code = (
        "import sys\n"
        "import framecast.training.autoencoder, framecast.training.river\n"
        "import framecast.training.vaegan, framecast.training.motion\n"
        "import framecast.training.simvp\n"
        "print('framecast.training.tasks' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["ae_smoke", "simvp_smoke", "wubu_vaegan"])
def test_frame_modules_build_only_from_a_resolved_config(name, tmp_path, shrink):
    """A frame kind's module refuses data.channels: auto; resolve_run_config settles it
    from the dataset (model.image_channels follows), then the module builds."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset.json").write_text(json.dumps({"channels": 1}))
    raw = read_yaml(CONFIGS / f"{name}.yaml")
    raw.setdefault("data", {})["channels"] = "auto"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    config = shrink(tmp_path / "config.yaml", data)
    task = get_task(config.model.kind)
    with pytest.raises(ConfigError, match=r"data.channels=auto: .*resolve_run_config\(config\)"):
        task.build_module(config)
    assert config.data.channels == "auto"  # the module decided nothing
    resolved = resolve_run_config(config)
    assert resolved.config is config and resolved.module_kwargs == {}
    assert config.data.channels == 1 and config.model.image_channels == 1
    module = task.build_module(resolved.config, **resolved.module_kwargs)
    assert module.config.model.image_channels == 1
    assert resolve_run_config(config).config.data.channels == 1  # idempotent (resume)


def test_motion_has_no_frames_to_resolve():
    """Motion reads JSON sessions: its config passes through as it is."""
    assert get_task("motion").resolve_config is keep_config
