"""What every kernel family's ops share: argument checks, group indices, device settings, the CPU math
of the FP8 GEMMs, the torch.compile custom ops, and the launch core (`launch`, imported on the first
GPU call only)."""
