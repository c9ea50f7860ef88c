"""The table of trainable kinds: every entry builds, every config kind has one, no circle."""

from __future__ import annotations

import subprocess
import sys

import pytest

from framecast.config.schema import ModelConfig
from framecast.errors import ConfigError
from framecast.training.task import Task
from framecast.training.tasks import KINDS, get_task


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
