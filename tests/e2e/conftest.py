"""Fixtures of the end-to-end suite (the helpers themselves are in harness.py)."""

import pytest

from harness import BridgeProcess, Env, FakeGitter, People, run


@pytest.fixture(scope="session")
def env() -> Env:
    return Env.from_environ()


@pytest.fixture(scope="session")
def gitter(env: Env) -> FakeGitter:
    return FakeGitter(env)


@pytest.fixture(scope="session")
def bridge(env: Env) -> BridgeProcess:
    return BridgeProcess(env)


@pytest.fixture(scope="session")
def people(env: Env):
    people = People(env)
    yield people
    run(people.close())
