"""Pure config-selection logic (stdlib only): kernel-family records, tile configs and their validity
rules, the sm_90 heuristic."""

from .config import GemmConfig, GemmShape, config_errors
from .families import BF16, FAMILIES, FP8_1D1D, FP8_1D2D, INT8, TF32, TF32X3, W4A16, W8A16
from .families.wonly import WonlyConfig
from .family import KernelFamily
from .sm90 import few_tiles, select_config, select_unsplit_config

__all__ = ["BF16", "FAMILIES", "FP8_1D1D", "FP8_1D2D", "INT8", "TF32", "TF32X3", "W4A16", "W8A16",
           "GemmConfig", "GemmShape", "KernelFamily", "WonlyConfig", "config_errors", "few_tiles",
           "select_config", "select_unsplit_config"]
