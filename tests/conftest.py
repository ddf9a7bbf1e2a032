import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["CUDA_VISIBLE_DEVICES"] = ""
sys.path.insert(0, str(Path(__file__).parent))  # for the shared helpers in _fixtures.py

import torchvision_cpu_shim  # noqa: E402

torchvision_cpu_shim.install()  # belt and braces: the venv's .pth normally does this
