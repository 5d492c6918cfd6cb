"""``mmvgm serve``: the HTTP service and its web page, over the one scoring path.

``create_app(settings)`` builds the FastAPI app: ``/v1/trace`` scores through
:class:`~mmvgm.predict.predictor.Predictor` (the numbers of ``mmvgm trace --json``), ``/v1/jobs``
runs scans whose state lives in a database (:mod:`mmvgm.serve.jobs`), ``/v1/protect`` runs
``mmvgm protect``'s code on an upload. Concurrent requests are batched into the predictor's
batches by one model thread (:mod:`mmvgm.serve.worker`).
"""
from mmvgm.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def create_app(settings: ServeSettings, **kwargs):  # noqa: ANN201 - FastAPI is an optional import
    """The FastAPI app for ``settings`` (see :func:`mmvgm.serve.app.create_app`)."""
    from mmvgm.serve.app import create_app as _create

    return _create(settings, **kwargs)
