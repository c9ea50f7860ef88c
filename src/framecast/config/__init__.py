"""Config schema, YAML loading and dotted overrides."""

from framecast.config.loader import apply_overrides, load_config, parse_override, save_config, validate_config
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
