"""spac: Stylish Pedestrian Attributes-union Captioning (attribute language, recognizers, captioner).

May import synth_pedes; never plip_train or pipelines.
"""
import torchvision_cpu_shim as _torchvision_cpu_shim

_torchvision_cpu_shim.install()  # no-op unless torchvision's CUDA-built extension cannot load
