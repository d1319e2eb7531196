"""The model on Ray Serve: N replicas of the local backend behind the OpenAI-compatible API.

``python -m pulse_app serve-ray`` deploys :class:`PulseReplica`: each replica is a Ray actor
(its own process) that loads the project's own engine (:mod:`pulse_app.engine.local`, so
PULSE-7B keeps its ``flat`` layout) and serves the very app of ``serve-openai``
(:func:`pulse_app.engine.openai_server.build_openai_app`: the same request/response models,
limits and errors). Ray's HTTP proxy spreads requests over the replicas; one answer at a time
per replica, so waiting requests queue at the proxy and go to whichever replica is free (the
proxy asks again at least every 20 ms, :data:`ROUTER_RETRY`, so no replica idles between
answers). Ray checks each replica's health (:meth:`PulseReplica.check_health`) and replaces a
dead one; with ``ray_max_replicas`` above ``ray_replicas`` it adds replicas while requests wait
(autoscaling). With ``ray_ingress="haproxy"`` Ray's HAProxy ingress takes the proxy's place
(Ray's ``RAY_SERVE_ENABLE_HA_PROXY``; the Debian package ``haproxy``): the replicas listen for
HTTP themselves and HAProxy spreads the requests, at ~1 ms of CPU per request where the Python
proxy spends ~30 ms on a page image (``python -m bench.ray_replicas``). Each replica reserves ``ray_gpus`` GPUs (1 on a GPU cluster), else one CPU core
and one torch thread. Every response says which replica wrote it (``x-pulse-replica``: host and
process id).

The web app and the CLI reach it like any OpenAI-compatible server:
``--backend openai --url http://HOST:PORT/v1``. Ray is an optional extra
(``requirements-ray.txt``); only this module imports it.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pulse_app.settings import Settings

log = logging.getLogger(__name__)

#: The Ray Serve application's name (``serve status``, ``serve shutdown``).
APP_NAME = "pulse"
#: Response header naming the replica (host:pid) that answered.
REPLICA_HEADER = b"x-pulse-replica"
#: Seconds between Ray's health checks of a replica, and how long one may take.
HEALTH_CHECK_PERIOD_S, HEALTH_CHECK_TIMEOUT_S = 10.0, 30.0
#: How often a request waiting at the proxy asks again for a free replica (first retry after
#: 5 ms, doubling up to every 20 ms). Ray's default backs off to 0.5 s (0, 25, 75, 175, 375,
#: 775 ms after the last answer was sent), and nothing wakes a waiting request when a replica
#: finishes, so a one-answer-at-a-time replica sat idle until the next retry: with the mini
#: model's ~180 ms answers the next one started at 175 or 375 ms (286 or 170 answers/min).
ROUTER_RETRY = {"initial_backoff_s": 0.005, "backoff_multiplier": 2.0, "max_backoff_s": 0.02}


def _named(app, name: str):
    """``app`` (ASGI) with the ``x-pulse-replica: name`` header on every HTTP response."""
    value = name.encode("ascii", "replace")

    async def named(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def send_named(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (REPLICA_HEADER, value)]}
            await send(message)

        return await app(scope, receive, send_named)

    return named


class PulseReplica:
    """One replica: the local backend, loaded at start, behind the OpenAI-compatible app."""

    def __init__(self, settings: "Settings", model_name: str | None = None):
        import torch

        from pulse_app.engine import make_backend
        from pulse_app.engine.openai_server import build_openai_app

        if not settings.ray_gpus:
            torch.set_num_threads(1)                  # one core per replica (num_cpus=1)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.backend = make_backend(settings)
        if hasattr(self.backend, "load"):
            self.backend.load()                       # a replica is ready once its model is
        self._asgi = _named(build_openai_app(self.backend, settings, model_name=model_name),
                          self.name)

    def __serve_build_asgi_app__(self):
        return self._asgi

    def check_health(self) -> None:
        """Ray calls this every :data:`HEALTH_CHECK_PERIOD_S`; raising marks the replica
        unhealthy, and Ray replaces it."""
        self.backend.info()


def deployment_options(settings: "Settings") -> dict:
    """Ray Serve options of :class:`PulseReplica` from the settings."""
    options = {
        "name": "PulseReplica",
        "max_ongoing_requests": 1,                    # the engine answers one at a time
        "ray_actor_options": ({"num_gpus": float(settings.ray_gpus)} if settings.ray_gpus
                              else {"num_cpus": 1}),
        "health_check_period_s": HEALTH_CHECK_PERIOD_S,
        "health_check_timeout_s": HEALTH_CHECK_TIMEOUT_S,
        "request_router_config": dict(ROUTER_RETRY),
    }
    if settings.ray_max_replicas > settings.ray_replicas:
        options["autoscaling_config"] = {
            "min_replicas": settings.ray_replicas, "initial_replicas": settings.ray_replicas,
            "max_replicas": settings.ray_max_replicas, "target_ongoing_requests": 1}
    else:
        options["num_replicas"] = settings.ray_replicas
    return options


def choose_ingress(ingress: str) -> None:
    """Set Ray Serve's ingress (``proxy`` or ``haproxy``) through its environment variables,
    before Ray Serve is imported: Ray reads them once per process, and a local cluster's
    processes inherit them. Raises a clear error without the haproxy binary, or when Ray Serve
    already runs in this process with the other ingress."""
    from pulse_app.errors import PulseError

    wanted = ingress == "haproxy"
    if wanted:
        found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
        if not found:
            raise PulseError("--ray-ingress haproxy needs the haproxy program, which is not "
                             "installed", hint="sudo apt-get install haproxy, or use "
                                               "--ray-ingress proxy")
        os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] = found
    os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1" if wanted else "0"
    constants = sys.modules.get("ray.serve._private.constants")
    if constants is not None and bool(constants.RAY_SERVE_ENABLE_HA_PROXY) != wanted:
        raise PulseError(f"Ray Serve already runs in this process with the other ingress, "
                         f"not {ingress!r}", hint="start another process for it")


def deploy(settings: "Settings", port: int = 8000, *, model_name: str | None = None,
           num_cpus: int | None = None) -> str:
    """Start (or join, ``settings.ray_address``) a Ray cluster, deploy the replicas and
    return the API's base URL (``http://HOST:PORT/v1``) once every replica is ready.
    ``num_cpus`` bounds a local cluster (default: every core). A running cluster
    (``ray_address``) must have been started with the same ingress (its environment)."""
    choose_ingress(settings.ray_ingress)
    import ray
    from ray import serve

    if not ray.is_initialized():
        # a local cluster's workers import pulse_app from this checkout; a remote cluster's
        # nodes have the project installed
        here = str(Path(__file__).resolve().parents[2])
        ray.init(address=settings.ray_address,
                 num_cpus=None if settings.ray_address else num_cpus,
                 runtime_env=None if settings.ray_address else {"env_vars": {"PYTHONPATH": here}},
                 include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": settings.host, "port": int(port)})
    replica = serve.deployment(**deployment_options(settings))(serve.ingress()(PulseReplica))
    serve.run(replica.bind(settings, model_name), name=APP_NAME, route_prefix="/")
    return f"http://{settings.host}:{int(port)}/v1"


def shutdown() -> None:
    """Remove the deployment and stop Ray (a local cluster ends with it). A replica or Ray's
    controller that died before (killed, out of memory) is logged, not raised: Ray still
    stops."""
    import ray
    from ray import serve
    from ray.exceptions import RayError

    try:
        serve.shutdown()
    except RayError as error:
        log.warning("Ray Serve did not shut down cleanly (%s); stopping Ray", error)
    finally:
        ray.shutdown()
