"""plip_train: PLIP pre-training (models, the three pretext tasks, trainer) and evaluation.

May import synth_pedes; never spac or pipelines.
"""
import torchvision_cpu_shim as _torchvision_cpu_shim

_torchvision_cpu_shim.install()  # no-op unless torchvision's CUDA-built extension cannot load
