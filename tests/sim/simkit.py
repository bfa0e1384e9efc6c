"""Helpers for the in-memory API server tests.

`GADGET_CRD` is a test kind whose schema exercises every validation feature the
server implements; the real CRDs are covered by the story tests.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from zsp_operator.sim import SimServer

GROUP = "test.zsp.dev"
GADGETS = f"/apis/{GROUP}/v1/namespaces/default/gadgets"

GADGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"gadgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {
            "plural": "gadgets",
            "singular": "gadget",
            "kind": "Gadget",
            "listKind": "GadgetList",
            "shortNames": ["gd"],
            "categories": ["zsp"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "type": "object",
                                "required": ["reason"],
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.size <= 10 || self.mode == 'big'",
                                        "message": "sizes above 10 need mode big",
                                    },
                                    {
                                        "rule": "self.reason == oldSelf.reason",
                                        "message": "reason is immutable",
                                    },
                                ],
                                "properties": {
                                    "reason": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": 40,
                                        "x-kubernetes-validations": [
                                            {
                                                "rule": "self.matches('\\\\S')",
                                                "message": "reason must not be blank",
                                            },
                                        ],
                                    },
                                    "size": {"type": "integer", "minimum": 1, "maximum": 100, "default": 3},
                                    "mode": {"type": "string", "enum": ["small", "big"], "default": "small"},
                                    "code": {"type": "string", "pattern": "^[a-z]+$"},
                                    "until": {"type": "string", "format": "date-time"},
                                    "tags": {
                                        "type": "array",
                                        "maxItems": 2,
                                        "items": {"type": "string"},
                                        "x-kubernetes-list-type": "set",
                                    },
                                    "permissions": {
                                        "type": "array",
                                        "x-kubernetes-list-type": "map",
                                        "x-kubernetes-list-map-keys": ["name"],
                                        "items": {
                                            "type": "object",
                                            "required": ["name"],
                                            "properties": {
                                                "name": {"type": "string"},
                                                "verbs": {
                                                    "type": "array",
                                                    "minItems": 1,
                                                    "items": {"type": "string"},
                                                },
                                            },
                                        },
                                    },
                                    "routes": {
                                        "type": "array",
                                        "x-kubernetes-list-type": "map",
                                        "x-kubernetes-list-map-keys": ["host", "port"],
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "host": {"type": "string"},
                                                "port": {"type": "integer"},
                                            },
                                        },
                                    },
                                    "groups": {
                                        "type": "object",
                                        "additionalProperties": {
                                            "type": "array",
                                            "items": {"type": "string"},
                                            "x-kubernetes-list-type": "set",
                                        },
                                    },
                                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "port": {"x-kubernetes-int-or-string": True},
                                    "note": {"type": "string", "nullable": True},
                                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                },
                            },
                            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                        },
                    }
                },
            }
        ],
    },
}


def gadget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Gadget",
        "metadata": {"name": name},
        "spec": {"reason": "testing", **spec},
    }


def configuration(sim: SimServer, token: str | None = None) -> client.Configuration:
    """A kubernetes_asyncio configuration with a bearer token (the key is "BearerToken")."""
    return client.Configuration(
        host=sim.url,
        api_key={"BearerToken": token or sim.admin_token},
        api_key_prefix={"BearerToken": "Bearer"},
    )


class Raw:
    """Plain HTTP against the server, for edge cases the typed client hides."""

    def __init__(self, sim: SimServer, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
        **params: str,
    ) -> tuple[int, Any]:
        headers = {"Content-Type": content_type}
        if token != "":
            headers["Authorization"] = f"Bearer {token or self.sim.admin_token}"
        data = None if body is None else json.dumps(body)
        async with self.session.request(
            method, self.sim.url + path, data=data, headers=headers, params=params
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text.startswith(("{", "[")) else text

    async def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        status, answer = await self.call(method, path, body, **kwargs)
        assert status < 300, (status, answer)
        return answer
