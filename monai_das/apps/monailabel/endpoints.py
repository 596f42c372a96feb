"""The endpoints the sample app answers itself, in place of MONAI Label 0.8.5's: ``POST /infer/<model>`` and
``POST /train/<model>``, ``GET /train/``, ``DELETE /train/``.

MONAI Label's versions run the work on the event loop (the server answers nothing else meanwhile and ignores SIGTERM),
leave a refused request's upload in the temporary folder, and answer a malformed ``params`` (not JSON, ``null``, a
list) with a bare 500. Here inference runs in the app's worker thread (:class:`~.jobs.InferenceQueue`), training in a
child process (:class:`~.jobs.TrainingRunner`), uploads live in the app's :class:`~.uploads.UploadFolder` for the
time of their request, and every refusal is 4xx JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException
from monailabel.interfaces.utils.app import app_instance
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse

from monai_das.apps.monailabel.jobs import Busy
from monai_das.apps.monailabel.request_checks import RequestError, check_bool

__all__ = ["ENDPOINTS", "app_services", "parse_params"]

logger = logging.getLogger(__name__)

#: the longest JSON text of ``params`` or of a training body
MAX_PARAMS_BYTES = 65536
#: seconds between two looks at a running training of a ``run_sync`` request
POLL_S = 0.25


def app_services() -> Any:
    """The running app when it provides the services the endpoints need (``uploads``, ``inference``,
    ``training``), else ``None``."""
    try:
        instance = app_instance()
    except Exception:  # noqa: BLE001 - no app (yet): nothing to serve or to stop
        return None
    return instance if all(hasattr(instance, a) for a in ("uploads", "inference", "training")) else None


def parse_params(text: Any, what: str = "params") -> dict[str, Any]:
    """A request's JSON options: a JSON object (``{}`` when empty).

    Raises:
        RequestError: for a file in place of text, text over ``MAX_PARAMS_BYTES``, invalid JSON or JSON that is not
            an object (400); the message names ``what``.
    """
    if text is None or text == "" or text == b"":
        return {}
    if not isinstance(text, (str, bytes)):
        raise RequestError(f"{what} must be JSON text, got a {type(text).__name__}.")
    if len(text) > MAX_PARAMS_BYTES:
        raise RequestError(f"{what} is longer than {MAX_PARAMS_BYTES} bytes.", 413)
    try:
        value = json.loads(text)
    except ValueError as e:
        raise RequestError(f"{what} is not valid JSON ({e}); send a JSON object such as '{{\"device\": \"cpu\"}}' "
                           "(curl -F cuts a value at ';': quote it, or use --form-string).") from e
    if not isinstance(value, dict):
        raise RequestError(f"{what} must be a JSON object, got {type(value).__name__}: {str(value)[:80]}.")
    return value


def _refusal(e: BaseException) -> JSONResponse:
    if isinstance(e, HTTPException):
        return JSONResponse({"detail": e.detail}, status_code=e.status_code)
    if isinstance(e, RequestError):
        return JSONResponse({"detail": str(e)}, status_code=e.status_code)
    if isinstance(e, Busy):
        return JSONResponse({"detail": str(e)}, status_code=503)
    logger.error("request failed: %s: %s", type(e).__name__, e, exc_info=e)
    return JSONResponse({"detail": f"internal error ({type(e).__name__}); see the server log."}, status_code=500)


def _check_query(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    query = dict(request.query_params)
    if "session_id" in query:
        raise RequestError("session_id: sessions are not served by this app; send the image id or the file.")
    unknown = sorted(k[:40] for k in query if k not in allowed)
    if unknown:
        raise RequestError(f"query parameter(s) {unknown} are not accepted; allowed: {list(allowed)}.")
    return query


async def _infer_form(request: Request) -> tuple[dict[str, Any], UploadFile | None]:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        if await request.body():
            raise RequestError("send the options as the form field 'params' (multipart or urlencoded form).")
        return {}, None
    try:
        form = await request.form(max_files=1, max_fields=4)
    except Exception as e:  # noqa: BLE001 - a malformed form body is the client's
        raise RequestError(f"the form cannot be read: {e}") from e
    unknown = sorted(k[:40] for k in form if k not in ("params", "file"))
    if unknown:
        raise RequestError(f"form field(s) {unknown} are not accepted; allowed: ['params', 'file'].")
    file = form.get("file")
    if file is not None and not isinstance(file, UploadFile):
        raise RequestError("the form field 'file' must be a file.")
    return parse_params(form.get("params")), file


async def infer(request: Request) -> JSONResponse:
    """``POST /infer/<model>?image=<id>`` or with a file: the app's inference, in its worker thread."""
    file = None
    try:
        query = _check_query(request, ("image", "output"))
        if query.get("output", "json") != "json":
            raise RequestError(f"output '{query['output'][:40]}': this app answers JSON only (output=json).")
        params, file = await _infer_form(request)
        instance = app_services()
        if instance is None:
            raise Busy("the app is not ready.")
        base = {"model": request.path_params.get("model") or request.url.path.rsplit("/", 1)[-1],
                "image": query.get("image", "")}
        if file is None and not base["image"] and "image" not in params:
            raise RequestError("send an image id (?image=<id>) or a file (-F file=@scan.nii.gz).")

        def run() -> Any:
            if file is None:
                return instance.infer({**base, **params})
            with instance.uploads.saved(file.file, file.filename) as path:
                return instance.infer({**base, "image": path, **params})

        result = await instance.inference.run(run)
        return JSONResponse(result.get("params") if isinstance(result, Mapping) else result)
    except Exception as e:  # noqa: BLE001 - every refusal gets a JSON answer
        return _refusal(e)
    finally:
        if file is not None:
            await file.close()


async def train_start(request: Request) -> JSONResponse:
    """``POST /train/<model>[?run_sync=true]`` with a JSON body of options: starts a training (409 while one runs);
    with ``run_sync`` waits for it without holding the event loop and answers its stats."""
    try:
        query = _check_query(request, ("run_sync",))
        run_sync = check_bool(query.get("run_sync", "false"), "run_sync")
        body = parse_params(await request.body(), "the training options (JSON body)")
        instance = app_services()
        if instance is None:
            raise Busy("the app is not ready.")
        checked = instance.check_train_request(request.url.path.rsplit("/", 1)[-1], body)
        try:
            task = instance.training.start(checked)
        except Busy as e:
            raise RequestError(str(e), 409) from e
        if not run_sync:
            return JSONResponse(task)
        while (status := instance.training.status()) and status["id"] == task["id"] and status["status"] == "RUNNING":
            await asyncio.sleep(POLL_S)
        return _finished(status)
    except Exception as e:  # noqa: BLE001 - every refusal gets a JSON answer
        return _refusal(e)


def _finished(task: Mapping[str, Any]) -> JSONResponse:
    if task["status"] == "DONE":
        return JSONResponse(task["result"])
    if task["status"] in ("STOPPED", "ABANDONED"):
        return JSONResponse({"detail": f"the training was stopped ({task['status']}).", "task": task}, status_code=503)
    details = task.get("details") or []
    reason = next((line for line in reversed(details) if re.match(r"[A-Za-z_.]*(Error|Exception):", line)), "")
    return JSONResponse({"detail": f"the training failed: {reason or 'see the task log'}", "task": task},
                        status_code=422)


async def train_status(request: Request) -> JSONResponse:
    """``GET /train/``: the last training task (404 when there was none)."""
    instance = app_services()
    status = instance.training.status() if instance is not None else None
    if status is None:
        return JSONResponse({"detail": "no training task yet."}, status_code=404)
    return JSONResponse(status)


async def train_stop(request: Request) -> JSONResponse:
    """``DELETE /train/``: stop the running training (its task becomes ``STOPPED``)."""
    instance = app_services()
    stopped = instance.training.stop() if instance is not None else False
    return JSONResponse({"stopped": stopped, "task": instance.training.status() if instance is not None else None})


#: (method, path pattern, handler) answered by the app itself
ENDPOINTS = (
    ("POST", re.compile(r"/infer/[^/]+"), infer),
    ("POST", re.compile(r"/train/[^/]+"), train_start),
    ("GET", re.compile(r"/train/?"), train_status),
    ("DELETE", re.compile(r"/train/?"), train_stop),
)
