"""The explorer's ASGI app: the packaged page, and a JSON API over svertka's own
functions. Every error a request can cause is a 4xx with ``{"error": one line}``;
the app keeps serving after it."""
from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import DataError, SvertkaError, UnknownModelError
from . import models
from .runs import RunStore
from .uploads import LIMITS, read_upload, upload_file, upload_message

STATIC = Path(__file__).parent / "static"


def create_app(runs_dir) -> Starlette:
    store = RunStore(runs_dir)

    def int_param(request: Request, key: str, default: int | None = None) -> int:
        raw = request.query_params.get(key)
        if raw is None:
            if default is None:
                raise HTTPException(400, f"missing query parameter {key}")
            return default
        try:
            return int(raw)
        except ValueError:
            raise HTTPException(400, f"query parameter {key} must be an integer, got {raw[:40]!r}") from None

    async def index(request):
        return FileResponse(STATIC / "index.html")

    async def zoo(request):
        return JSONResponse(await run_in_threadpool(models.zoo))

    async def model_names(request):
        from ..zoo import get_entry, list_models

        return JSONResponse([{"name": n, "description": get_entry(n).description} for n in list_models()])

    async def model(request):
        return JSONResponse(await run_in_threadpool(models.model_page, request.path_params["name"]))

    async def rf(request):
        q = request.query_params
        run = store.folder(q["run"]) if q.get("run") else None
        layer = q.get("layer") or ""
        args = (request.path_params["name"], layer, int_param(request, "y"), int_param(request, "x"),
                int_param(request, "sample", models.samples()[3][0]), run)
        return JSONResponse(await run_in_threadpool(store.locked, models.receptive_field, *args))

    async def samples(request):
        return JSONResponse(models.sample_list())

    async def conv(request):
        keys = ("in", "kernel", "stride", "padding", "dilation")
        defaults = (5, 3, 1, 1, 1)
        return JSONResponse(models.conv_geometry(*(int_param(request, k, d) for k, d in zip(keys, defaults))))

    async def runs(request):
        return JSONResponse({"runs": await run_in_threadpool(store.list), "root": str(store.root),
                             "limits": LIMITS})

    async def metrics(request):
        since = max(0, int_param(request, "since", 0))
        return JSONResponse(await run_in_threadpool(store.metrics, request.path_params["name"], since))

    async def confusion(request):
        return JSONResponse(await run_in_threadpool(store.confusion, request.path_params["name"]))

    async def predict(request):
        name = request.path_params["name"]
        store.folder(name)  # a bad name is refused before the body is read
        k = min(max(1, int_param(request, "k", 5)), 100)
        invert = request.query_params.get("invert", "auto")
        data = await read_upload(request)
        with upload_file(data) as path:
            try:
                return JSONResponse(await run_in_threadpool(store.predict, name, path, k, invert))
            except DataError as e:
                raise DataError(upload_message(str(e), path)) from None

    async def http_error(request, exc: HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    async def user_error(request, exc: SvertkaError):
        status = 404 if isinstance(exc, UnknownModelError) else 400
        return JSONResponse({"error": str(exc)}, status_code=status)

    async def server_error(request, exc: Exception):  # a bug: one line to the page, the traceback to the log
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server's log"},
                            status_code=500)

    routes = [
        Route("/", index),
        Route("/api/zoo", zoo),
        Route("/api/models", model_names),
        Route("/api/models/{name}", model),
        Route("/api/models/{name}/rf", rf),
        Route("/api/samples", samples),
        Route("/api/conv", conv),
        Route("/api/runs", runs),
        Route("/api/runs/{name:path}/metrics", metrics),
        Route("/api/runs/{name:path}/confusion", confusion),
        Route("/api/runs/{name:path}/predict", predict, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, SvertkaError: user_error,
                                                        Exception: server_error})
