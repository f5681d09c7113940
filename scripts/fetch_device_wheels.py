"""Download the wheels the GPU machine lacks into ``.device_wheels/`` (git-ignored, never committed).

The GPU machine reaches no package registry; scripts/device_gpu_decode.sh installs whatever it
finds in ``.device_wheels/`` there (pip --no-index --no-deps --target), so the session that runs it
passes ``carry=[".device_wheels"]``. Its image has torch 2.11 (CUDA 13), Python 3.12 and an older
transformers, and no bitsandbytes or torchao:

- torchao 0.18.0: weight-only int8 / int4 (load_in int8_weight / int4_weight); needs torch >= 2.11;
- bitsandbytes 0.50.2: load_in 8bit / 4bit, trimmed to its CUDA 13 libraries (the full wheel,
  43 MB with every CUDA version, would fill most of the 64 MiB a call may carry);
- transformers 5.24.0: the version the CPU tests run (pure Python).

    python scripts/fetch_device_wheels.py          # writes .device_wheels/, prints sizes
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / ".device_wheels"
WHEELS = ("torchao==0.18.0", "bitsandbytes==0.50.2", "transformers==5.24.0")
# The GPU machine: CPython 3.12 on x86-64 glibc.
PLATFORM_ARGS = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                 *[arg for tag in ("manylinux_2_28_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
                                   "manylinux2014_x86_64") for arg in ("--platform", tag)]]
# bitsandbytes loads libbitsandbytes_cuda<torch's CUDA version>.so: keep CUDA 13.x and the CPU one.
BNB_KEEP = re.compile(r"bitsandbytes/libbitsandbytes_(cpu|cuda13\d)\.so$")
BNB_LIBRARY = re.compile(r"bitsandbytes/libbitsandbytes_\w+\.so$")


def download(requirement: str, folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
                    *PLATFORM_ARGS, "-d", str(folder), requirement], check=True)
    name = requirement.split("==")[0].replace("-", "_")
    (wheel,) = [w for w in folder.glob("*.whl") if w.name.lower().startswith(name.lower() + "-")]
    return wheel


def trimmed_bitsandbytes(wheel: Path, out: Path) -> Path:
    """The wheel without the libraries of other CUDA / ROCm / XPU versions (RECORD rewritten to match)."""
    target = out / wheel.name
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as sink:
        dropped = {n for n in source.namelist() if BNB_LIBRARY.search(n) and not BNB_KEEP.search(n)}
        for info in source.infolist():
            if info.filename in dropped:
                continue
            data = source.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines()
                data = ("\n".join(line for line in lines if line.split(",")[0] not in dropped) + "\n").encode()
            sink.writestr(info, data)
    return target


def main() -> int:
    TARGET.mkdir(exist_ok=True)
    for old in TARGET.glob("*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for requirement in WHEELS:
            wheel = download(requirement, folder)
            if wheel.name.startswith("bitsandbytes-"):
                trimmed_bitsandbytes(wheel, TARGET)
            else:
                wheel.replace(TARGET / wheel.name)
    total = 0
    for wheel in sorted(TARGET.glob("*.whl")):
        total += wheel.stat().st_size
        print(f"{wheel.stat().st_size / 2**20:6.1f} MiB  {wheel.relative_to(ROOT)}")
    print(f"{total / 2**20:6.1f} MiB in all (a device call carries at most 64 MiB with the working tree)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
