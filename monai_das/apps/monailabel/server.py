"""The sample app's server: MONAI Label's FastAPI app behind a guard. Start it with MONAI Label's own option
``--uvicorn_app monai_das.apps.monailabel.server:app`` (the sample app refuses to start without it)::

    MONAI_LABEL_SESSIONS=false python -m monailabel.main start_server --app my_app --studies studies/ \\
        --host 127.0.0.1 --port 8000 --uvicorn_app monai_das.apps.monailabel.server:app \\
        --conf bundle bundles/vesselmnist3d_das_classification --conf token_file token

The guard (an ASGI app in front of MONAI Label's) does what MONAI Label 0.8.5 cannot be configured to do:

- it serves only the endpoints of :mod:`.access` and answers every other one 403 before MONAI Label sees it (the
  model, scoring, active-learning, batch, session, proxy and log endpoints are off);
- it checks the token of the endpoints that need one;
- it answers ``POST /infer/<model>`` and ``/train`` itself (:mod:`.endpoints`): off the event loop, uploads removed
  on every answer, malformed requests 4xx JSON;
- it turns the app's refusals raised inside MONAI Label's own endpoints (datastore) into 4xx JSON (exception
  handlers registered before the app starts);
- on SIGTERM / SIGINT it stops the running training and the inference queue, then lets uvicorn shut down.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Callable
from typing import Any

from monailabel.app import app as monailabel_app
from monailabel.config import settings
from monailabel.interfaces.exception import ImageNotFoundException, MONAILabelException
from starlette.requests import Request
from starlette.responses import JSONResponse

from monai_das.apps.monailabel.access import AccessPolicy, route_level, served_routes
from monai_das.apps.monailabel.endpoints import ENDPOINTS, app_services
from monai_das.apps.monailabel.request_checks import RequestError

__all__ = ["app", "GuardedApp", "installed"]

logger = logging.getLogger(__name__)


def installed() -> bool:
    """Whether the server runs behind this guard (the sample app checks it at start)."""
    return _INSTALLED


def _json_error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


async def _request_error(request: Request, exc: Exception) -> JSONResponse:
    """MONAI Label's datastore endpoints (the only ones of its own the guard lets through) answer a malformed form
    (``info=[1,2]``: a ``TypeError`` where MONAI Label adds the user to it; text that is not JSON) with a bare 500;
    here with 4xx JSON."""
    if isinstance(exc, RequestError):
        status, detail = exc.status_code, str(exc)
    elif isinstance(exc, ImageNotFoundException):
        status, detail = 404, str(exc)
    elif isinstance(exc, json.JSONDecodeError):
        status, detail = 400, f"a form field is not valid JSON: {exc}"
    elif isinstance(exc, TypeError):
        status, detail = 400, f"malformed request (a JSON object was expected): {exc}"
    else:
        status, detail = 422, str(exc)
    logger.warning("refused %s %s (%d): %s", request.method, request.url.path, status, exc)
    return _json_error(status, detail)


for _exc in (RequestError, ImageNotFoundException, json.JSONDecodeError, TypeError, MONAILabelException):
    monailabel_app.add_exception_handler(_exc, _request_error)


class GuardedApp:
    """ASGI app: the access policy and the app's own endpoints in front of ``inner`` (MONAI Label's app)."""

    def __init__(self, inner: Callable) -> None:
        self.inner = inner
        self.policy: AccessPolicy | None = None
        self._previous_handlers: dict[int, Any] = {}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self.inner(scope, self._lifespan_receive(receive), self._lifespan_send(send))
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:  # websockets: MONAI Label serves none
            await send({"type": "websocket.close", "code": 1008})

    async def _http(self, scope: dict, receive: Callable, send: Callable) -> None:
        path = scope["path"][len(scope.get("root_path", "")):] if scope.get("root_path") else scope["path"]
        level = route_level(scope["method"], path)
        if level is None:
            response = _json_error(403, f"{scope['method']} {path[:200]} is not served by this app; it serves: "
                                   f"{served_routes()}.")
            return await response(scope, receive, send)
        if self.policy is None:
            return await _json_error(503, "the server is starting.")(scope, receive, send)
        authorization = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        refusal = self.policy.refusal(level, authorization)
        if refusal is not None:
            headers = {"WWW-Authenticate": "Bearer"} if refusal[0] == 401 else None
            response = JSONResponse({"detail": refusal[1]}, status_code=refusal[0], headers=headers)
            return await response(scope, receive, send)
        for method, pattern, handler in ENDPOINTS:
            if method == scope["method"] and pattern.fullmatch(path):
                response = await handler(Request(scope, receive))
                return await response(scope, receive, send)
        await self.inner(scope, receive, send)

    # --------------------------------------------------------------------------------------------------- lifespan

    def _lifespan_send(self, send: Callable) -> Callable:
        async def wrapped(message: dict) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.policy = AccessPolicy.from_conf(settings.MONAI_LABEL_APP_CONF or {})
                self._install_signal_handlers()
                logger.info("serving %s; inference %s, token endpoints %s", served_routes(),
                            "open" if self.policy.open_infer else "behind the token",
                            "on" if self.policy.token else "off (no --conf token_file)")
            await send(message)

        return wrapped

    def _lifespan_receive(self, receive: Callable) -> Callable:
        async def wrapped() -> dict:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                self._stop_work()
                services = app_services()
                if services is not None:
                    services.uploads.remove()
            return message

        return wrapped

    def _install_signal_handlers(self) -> None:
        """Chain a handler in front of uvicorn's: stop the work first, so that a waiting ``run_sync`` request is
        answered at once and uvicorn's graceful shutdown does not wait for a training."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            self._previous_handlers[sig] = previous

            def handler(signum: int, frame: Any, previous: Any = previous) -> None:
                logger.info("signal %d: stopping the running training and the inference queue", signum)
                self._stop_work()
                if callable(previous):
                    previous(signum, frame)

            signal.signal(sig, handler)

    @staticmethod
    def _stop_work() -> None:
        services = app_services()
        if services is not None:
            services.training.shutdown()
            services.inference.stop()


_INSTALLED = True
#: the ASGI app to pass to ``--uvicorn_app``
app = GuardedApp(monailabel_app)
