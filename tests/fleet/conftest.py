"""A fleet per test: real Tritons behind a real HAProxy, gateway processes in front; all stopped after."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localdev.fleet import Fleet

FleetFactory = Callable[..., Fleet]


@pytest.fixture
def fleet_factory(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetFactory]:
    """``fleet_factory(tritons=2, gateways=2, models=[...], gateway_env={...})``: a started fleet."""
    fleets: list[Fleet] = []

    def start(**kwargs: Any) -> Fleet:
        # A short directory of its own: HAProxy's admin socket path must stay under the 108-byte limit.
        work = tmp_path_factory.mktemp("fleet")
        fleet = Fleet(model_repository, log_dir=work / "logs", work_dir=work, **kwargs)
        fleets.append(fleet)
        return fleet.start()

    yield start
    for fleet in fleets:
        fleet.stop()
