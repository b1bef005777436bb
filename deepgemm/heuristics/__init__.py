"""Pure config-selection logic (stdlib only): tile configs, their validity rules, the sm_90 heuristic."""

from .config import GemmConfig, GemmShape, config_errors
from .sm90 import select_config

__all__ = ["GemmConfig", "GemmShape", "config_errors", "select_config"]
