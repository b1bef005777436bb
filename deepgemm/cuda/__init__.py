"""Thin CUDA driver helpers: error checking, device properties, TMA descriptors."""

from deepgemm.cuda.device import device_index, get_max_smem_per_block_optin
from deepgemm.cuda.driver import CudaError, call, check
from deepgemm.cuda.tma import TmaDescriptor, make_tma_descriptor

__all__ = ["CudaError", "TmaDescriptor", "call", "check", "device_index", "get_max_smem_per_block_optin",
           "make_tma_descriptor"]
