from pathlib import Path

from setuptools import setup

# logger.backends "mlflow": the tracking client without MLflow's server and UI, and the SQL
# libraries of the local SQLite store it writes (MLflow 3 refuses its older file store by default)
MLFLOW = ["mlflow-skinny>=2.10", "sqlalchemy>=2", "alembic>=1.10"]

# --offline from a Minari dataset directory: h5py reads its HDF5 file (no minari package needed)
OFFLINE = ["h5py>=3.8"]

setup(
    name="worldmodels",
    version="0.1.0",
    description="A PyTorch plugin framework for model-based reinforcement learning (Dyna, Dream, Hybrid)",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["registry", "wm_core", "wm_envs", "worldmodels", "policies", "workers", "wm_app", "configs"],
    package_data={"configs": ["*.py"]},
    install_requires=[
        "torch>=2.2,<2.15",
        "numpy>=1.24",
        "gymnasium[mujoco,classic-control]>=1.1,<2",  # classic-control: pygame renders Pendulum/CartPole frames
        "mujoco>=3.1,<4",  # dm-control 1.0.50 does not load suite tasks on mujoco 4
        "dm-control>=1.0.20",  # the DeepMind Control Suite (dm_control/<domain>-<task>-v0 envs)
        "easydict>=1.10",
        "tensorboardX>=2.6",
        "tqdm>=4.60",  # progress bars with rates and postfix fields
        "matplotlib>=3.7",  # comparison and learning-curve plots
        "scipy>=1.15",  # compare's bootstrap intervals (scipy.stats.bootstrap, rng=); dm-control needs it anyway
        "pillow>=9",  # resizes rendered frames to 64x64 (the pixels env wrapper)
    ],
    extras_require={
        # the MLflow and Minari tests run, not skip; pytest-xdist runs the suite on every core (-n auto)
        "test": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6", *MLFLOW, *OFFLINE],
        "ray": ["ray>=2.9"],
        "mlflow": MLFLOW,
        "offline": OFFLINE,
    },
    entry_points={
        "console_scripts": ["worldmodels=wm_app.cli:main"],
    },
)
