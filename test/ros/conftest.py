"""Fixtures of the ROS tests: a domain id of their own, the client node, the tiny model folders.

Every test session talks on its own ROS_DOMAIN_ID (derived from the pid) with localhost-only
discovery, so parallel runs on one machine (or a team's runs) never see each other's nodes.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator

import pytest

# Before any rclpy context exists: discovery on the loopback only (Kilted+; older ROS ignores it,
# and ROS_LOCALHOST_ONLY is its equivalent there).
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
if os.environ.get("ROS_DISTRO") in ("humble", "iron"):
    os.environ["ROS_LOCALHOST_ONLY"] = "1"

# 10..109: apart from test_interfaces.py's 150..209, and below Fast DDS's port limit (~232).
ROS_TEST_DOMAIN_ID = 10 + os.getpid() % 100
# 110..149: a domain nobody talks on, for nodes built in THIS process that need no peer.
LONE_DOMAIN_ID = 110 + os.getpid() % 40


@pytest.fixture(scope="session")
def domain_id() -> int:
    return ROS_TEST_DOMAIN_ID


@pytest.fixture(scope="session")
def lone_domain_id() -> int:
    """A domain without the test client or any node process on it, for a node built in the test
    process only to be inspected (its parameters, entities, errors). On the shared domain its
    participant would start discovery with the client's, in the same process, and Fast DDS 3.2 can
    deadlock destroying a participant while an intraprocess discovery callback is under way (seen:
    ``destroy_node`` spinning in ``DomainParticipant::set_listener`` with the GIL held, which no
    pytest timeout can interrupt)."""
    return LONE_DOMAIN_ID


@pytest.fixture(scope="session")
def client(domain_id: int) -> Iterator["RosClient"]:  # noqa: F821
    from support.dds import RosClient

    ros_client = RosClient(domain_id)
    yield ros_client
    ros_client.close()
    # survived (BackgroundNode spins on) but a bug of a test's callback or of the client library
    for error in ros_client.all_errors():
        warnings.warn(f"a callback of the test client raised:\n{error}", stacklevel=1)


@pytest.fixture(scope="session")
def chain_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny model answering " the red cup" + one seg group, then end of sequence (11 tokens)."""
    from support.scripted_model import build_scripted_model

    return build_scripted_model(tmp_path_factory.mktemp("chain_model") / "model", loop=False)


@pytest.fixture(scope="session")
def loop_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny model repeating " the red cup" + a seg group until max_new_tokens."""
    from support.scripted_model import build_scripted_model

    return build_scripted_model(tmp_path_factory.mktemp("loop_model") / "model", loop=True)


@pytest.fixture(scope="session")
def slow_loop_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The loop model with a 12-layer LLM and 4096 positions: 2000 tokens take seconds."""
    from support.scripted_model import build_scripted_model

    return build_scripted_model(tmp_path_factory.mktemp("slow_loop_model") / "model", loop=True, llm_layers=12,
                                max_positions=4096)


@pytest.fixture(scope="session")
def single_thread_torch() -> None:
    # The node subprocesses run with OMP_NUM_THREADS=1; the reference engine here must too, so
    # that both compute the same floats (and the machine's cores are shared).
    import torch

    torch.set_num_threads(1)
