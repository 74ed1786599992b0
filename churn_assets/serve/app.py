"""``churn-assets serve``: the churn risk of any customer, now, over HTTP.

``GET /v1/customers/{id}/risk`` answers from the in-memory snapshot (champion model + the latest
gold features of every customer, scored when loaded); ``POST /v1/score`` scores a feature
payload with the same model. Everything under ``/v1`` needs ``Authorization: Bearer <key>``
(the key comes from ``$CHURN_API_KEY`` and is never logged); ``/healthz`` and ``/readyz`` do
not. Responses carry ids, scores and feature names only: no personal data.
"""

import logging
import os
import secrets
import sys
import threading
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any

import polars as pl
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, create_model

from churn_assets.serve.snapshot import OUTSIDE_POPULATION, Snapshot, SnapshotHolder
from churn_assets.transforms.gold import FEATURE_SCHEMA

API_KEY_ENV = "CHURN_API_KEY"
DOCS_ASSETS = "/docs-assets"
log = logging.getLogger("churn_assets.serve")


class Driver(BaseModel):
    feature: str
    impact: float = Field(description="SHAP value on the log-odds scale (> 0 raises the risk)")


class PolicyAction(BaseModel):
    action: str | None = Field(description="the retention action, or null: none")
    cost: float | None = None
    expected_value: float | None = Field(None, description="expected saved revenue")
    control: bool | None = Field(None, description="selected but held out as control")
    source: str = Field(description="'decisions/actions <day>' (the day's CRM feed); 'the "
                        "policy on <day>' (the day is not decided yet: the same policy run over "
                        "all of that day's customers); or 'policy on this customer alone' (a "
                        "payload)")
    reason: str | None = None


class Risk(BaseModel):
    customer_id: str
    churn_probability: float | None = Field(description="calibrated probability of churning "
                                            "within the label horizon; null outside the model's "
                                            "population")
    risk_band: str | None
    cltv: float | None = Field(description="expected net revenue over the CLTV horizon")
    revenue_at_risk: float | None = Field(description="churn_probability x cltv")
    top_drivers: list[Driver]
    action: PolicyAction
    model_version: str
    feature_date: date | None = Field(description="the gold snapshot day the features are of")
    note: str | None = None


def _payload_model() -> type[BaseModel]:
    """The POST body: every gold feature, required (null allowed where gold has nulls), typed
    strictly, so a wrong type or a missing field is a 422 that names it."""
    kinds = {"Int64": int, "Float64": float, "String": str, "Boolean": bool}
    fields: dict[str, Any] = {
        "customer_id": (str, Field("payload", description="echoed back; any id")),
        # Strict types everywhere else; a date arrives as ISO text in JSON.
        "snapshot_date": (date | None, Field(None, strict=False,
                                             description="the day the features are of (ISO)")),
    }
    for name, dtype in FEATURE_SCHEMA.items():
        if name in fields:
            continue
        fields[name] = (kinds[type(dtype).__name__] | None, Field(...))
    return create_model("CustomerFeatures", __config__=ConfigDict(strict=True, extra="forbid"),
                        **fields)


CustomerFeatures = _payload_model()


def create_app(holder: SnapshotHolder, api_key: str | None,
               reload_seconds: float | None = None) -> FastAPI:
    """The API over ``holder``. ``api_key`` None serves without authentication (--no-auth).
    With ``reload_seconds``, a background thread swaps in new snapshots while serving."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        stop = threading.Event()
        if reload_seconds:
            threading.Thread(target=holder.watch, args=(reload_seconds, stop), daemon=True,
                             name="snapshot-reload").start()
        yield
        stop.set()

    # /docs and /redoc from Swagger UI and ReDoc files shipped in the fastapi-offline wheel,
    # served by this app under DOCS_ASSETS: no network at run time (FastAPI's own pages load
    # them from a CDN). No online validator badge either: it would call out.
    app = FastAPIOffline(title="churn-assets scoring API", version="1", lifespan=lifespan,
                         description="Churn risk, value and next action per customer, from the "
                         "champion model and the latest gold features.",
                         static_url=DOCS_ASSETS, swagger_ui_parameters={"validatorUrl": None})
    bearer = HTTPBearer(auto_error=False, description=f"the key in ${API_KEY_ENV}")

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None,
                                          Depends(bearer)]) -> None:
        if api_key is None:
            return
        given = credentials.credentials if credentials else ""
        if not secrets.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key: send 'Authorization: Bearer "
                                f"<key>' with the key in ${API_KEY_ENV}",
                                headers={"WWW-Authenticate": "Bearer"})

    def snapshot() -> Snapshot:
        current = holder.current  # read once: one model and one feature day per answer
        if current is None:
            raise HTTPException(503, f"not ready: {holder.last_error or 'loading'}")
        return current

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz():
        current = holder.current
        if current is None:
            return JSONResponse({"status": "not ready", "error": holder.last_error}, 503)
        return {"status": "ready", "model_version": current.model_version,
                "feature_date": current.feature_date.isoformat(),
                "customers": len(current.customers), "loaded_at": current.loaded_at.isoformat(),
                "last_reload_error": holder.last_error}

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorized)], tags=["scoring"])

    @v1.get("/customers/{customer_id}/risk", response_model=Risk,
            responses={404: {"description": "unknown customer"}, 401: {}, 503: {}})
    def customer_risk(customer_id: str) -> Risk:
        current = snapshot()
        key = customer_id.strip().upper()  # silver's canonical form of ids
        row = current.customers.get(key)
        if row is None:
            raise HTTPException(404, f"no customer {customer_id!r} in the gold features of "
                                f"{current.feature_date}")
        return _risk(row, current.action_for(key), current.model_version, current.feature_date)

    @v1.post("/score", response_model=Risk, responses={422: {}, 401: {}, 503: {}})
    def score(features: CustomerFeatures) -> Risk:  # type: ignore[valid-type]
        current = snapshot()
        frame = pl.DataFrame([features.model_dump()], schema={
            "customer_id": pl.String, "snapshot_date": pl.Date,
            **{n: t for n, t in _polars_schema().items() if n not in ("customer_id",
                                                                      "snapshot_date")}})
        row = current.scorer.score(frame).row(0, named=True)
        row["segment"] = features.segment
        action = current.scorer.policy_alone({**row, "feature_date": features.snapshot_date})
        return _risk(row, action, current.model_version, features.snapshot_date)

    app.include_router(v1)

    @app.exception_handler(LookupError)
    async def lookup_failed(request: Request, exc: LookupError):
        return JSONResponse({"detail": str(exc)}, 404)

    return app


def _polars_schema() -> dict[str, pl.DataType]:
    kinds = {"Int64": pl.Int64, "Float64": pl.Float64, "String": pl.String,
             "Boolean": pl.Boolean, "Date": pl.Date}
    return {n: kinds[type(t).__name__] for n, t in FEATURE_SCHEMA.items()}


def _risk(row: dict, action: dict, version: str, feature_date: date | None) -> Risk:
    drivers = [Driver(**d) for d in (row.get("drivers") or []) if d and d["feature"]]
    return Risk(
        customer_id=row["customer_id"], churn_probability=row["churn_probability"],
        risk_band=row["risk_band"], cltv=row["cltv"], revenue_at_risk=row["revenue_at_risk"],
        top_drivers=drivers, action=PolicyAction(**action), model_version=version,
        feature_date=feature_date,
        note=None if row.get("churn_probability") is not None else OUTSIDE_POPULATION,
    )


def run_server(host: str = "127.0.0.1", port: int = 8000, require_key: bool = True,
               reload_seconds: float = 30.0) -> int:
    import uvicorn

    from churn_assets.resources import build_resources, environment
    from churn_assets.settings import Paths, load_settings

    api_key = os.environ.get(API_KEY_ENV) or None
    if require_key and api_key is None:
        print(f"churn-assets serve: error: set ${API_KEY_ENV} to the API key clients must send "
              "as 'Authorization: Bearer <key>', or pass --no-auth (a laptop only)",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    paths = Paths.from_env()
    settings = load_settings(paths)
    resources = build_resources(environment(), paths, settings)
    holder = SnapshotHolder(resources["store"], resources["mlflow"], settings)
    if not holder.refresh():
        log.warning("starting without a snapshot (/readyz is 503 until one loads): %s",
                    holder.last_error)
    app = create_app(holder, api_key if require_key else None, reload_seconds)
    print(f"scoring API on http://{host}:{port} (docs: /docs)"
          f"{'' if require_key else ' WITHOUT authentication (--no-auth)'}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0
