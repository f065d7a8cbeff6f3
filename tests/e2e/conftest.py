"""Fixtures of the end-to-end suite (the helpers themselves are in harness.py)."""

import pytest

import harness
from harness import BridgeProcess, Env, FakeGitter, People, Synapse


@pytest.fixture(scope="session")
def env() -> Env:
    return Env.from_environ()


@pytest.fixture(scope="session")
def gitter(env: Env) -> FakeGitter:
    return FakeGitter(env)


@pytest.fixture(scope="session")
def synapse(env: Env) -> Synapse:
    return Synapse(env)


@pytest.fixture(scope="session")
def bridge(env: Env) -> BridgeProcess:
    return BridgeProcess(env)


@pytest.fixture(scope="session")
def people(env: Env) -> People:
    return People(env)


@pytest.fixture(scope="session", autouse=True)
def _close_clients_at_the_end():
    yield
    harness.shutdown()
