"""`run.py --demo`: a stand-in ML service and simulated users, so every stream and table fills."""

from __future__ import annotations

from kaleido.demo.ml_standin import MlStandin
from kaleido.demo.traffic import Traffic
from kaleido.posts import Posts
from kaleido.service import Service


async def start_demo(service: Service) -> None:
    """Start both demo actors under the service's supervisor."""
    backends, stopping = service.backends, service.supervisor.stopping
    standin = MlStandin(backends.redis, backends.keys, stopping)
    traffic = Traffic(
        Posts(backends.postgres, service.publisher), service.publisher, service.tracker, stopping
    )
    await service.supervisor.start("demo-ml-standin", standin.run)
    await service.supervisor.start("demo-traffic", traffic.run)
