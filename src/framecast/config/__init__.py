"""Config schema, YAML loading and dotted overrides."""

# Model kinds register their schema on import.
from framecast.config import autoencoder as _autoencoder  # noqa: E402,F401
from framecast.config import motion as _motion  # noqa: E402,F401
from framecast.config import river as _river  # noqa: E402,F401
from framecast.config import simvp as _simvp  # noqa: E402,F401
from framecast.config import vaegan as _vaegan  # noqa: E402,F401
from framecast.config.loader import (
    apply_overrides,
    load_config,
    parse_override,
    save_config,
    validate_config,
)
from framecast.config.schema import (
    Config,
    DataConfig,
    LoggingConfig,
    ModelConfig,
    TrainingConfig,
    register_model_kind,
)

__all__ = [
    "Config",
    "DataConfig",
    "LoggingConfig",
    "ModelConfig",
    "TrainingConfig",
    "apply_overrides",
    "load_config",
    "parse_override",
    "register_model_kind",
    "save_config",
    "validate_config",
]
