"""Shared bits of the kopf layer: the memo's contents and error translation."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import kopf

from zsp_operator.core import constants as c
from zsp_operator.engine.controller import Controller
from zsp_operator.kube import KubeError
from zsp_operator.kube.retry import backoff

P = ParamSpec("P")
R = TypeVar("R")

REQUESTS = (c.GROUP, c.VERSION, c.PLURAL_REQUEST)
GRANTS = (c.GROUP, c.VERSION, c.PLURAL_GRANT)
POLICIES = (c.GROUP, c.VERSION, c.PLURAL_POLICY)


def controller_of(memo: Any) -> Controller:
    controller: Controller = memo.controller
    return controller


def retry_on_api_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """API trouble becomes kopf's TemporaryError: the handler is retried by the retry policy."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except KubeError as err:
            attempt = kwargs.get("retry")  # kopf counts the handler's retries so far
            delay = backoff(attempt if isinstance(attempt, int) else 0, retryable=err.retryable)
            raise kopf.TemporaryError(f"API call failed: {err}", delay=delay) from err

    return wrapper
