"""TokenRequest, ServiceAccount token authentication and TokenReview."""

from __future__ import annotations

import time
from typing import Any

from simkit import Raw

from zsp_operator.sim import SimServer, decode_unverified

SA_TOKEN = "/api/v1/namespaces/default/serviceaccounts/{}/token"


def token_request(seconds: int | None = None, audiences: list[str] | None = None,
                  bound: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if seconds is not None:
        spec["expirationSeconds"] = seconds
    if audiences:
        spec["audiences"] = audiences
    if bound:
        spec["boundObjectRef"] = bound
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


async def make_account(raw: Raw, name: str) -> dict[str, Any]:
    account: dict[str, Any] = await raw.ok("POST", "/api/v1/namespaces/default/serviceaccounts",
                                           {"metadata": {"name": name}})
    return account


async def mint(raw: Raw, name: str, **options: Any) -> dict[str, Any]:
    answer: dict[str, Any] = await raw.ok("POST", SA_TOKEN.format(name), token_request(**options))
    return answer


async def whoami(raw: Raw, token: str) -> tuple[int, Any]:
    return await raw.call("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                          {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}, token=token)


async def test_token_request_defaults_to_an_hour_and_returns_a_jwt(raw: Raw) -> None:
    account = await make_account(raw, "robot")
    before = int(time.time())
    answer = await mint(raw, "robot")
    assert answer["kind"] == "TokenRequest"
    assert answer["spec"]["expirationSeconds"] == 3600
    claims = decode_unverified(answer["status"]["token"])
    assert claims["sub"] == "system:serviceaccount:default:robot"
    assert claims["kubernetes.io"] == {"namespace": "default",
                                       "serviceaccount": {"name": "robot", "uid": account["metadata"]["uid"]}}
    assert claims["aud"] == ["https://kubernetes.default.svc.cluster.local"]
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert before <= claims["iat"] == claims["nbf"] <= before + 2
    assert claims["exp"] - claims["iat"] == 3600
    assert answer["status"]["expirationTimestamp"].endswith("Z")


async def test_expiration_below_ten_minutes_is_422(raw: Raw) -> None:
    await make_account(raw, "robot")
    status, body = await raw.call("POST", SA_TOKEN.format("robot"), token_request(599))
    assert status == 422
    assert body["message"] == ('TokenRequest.authentication.k8s.io "robot" is invalid: spec.expirationSeconds: '
                               "Invalid value: 599: may not specify a duration less than 10 minutes")
    assert (await mint(raw, "robot", seconds=600))["spec"]["expirationSeconds"] == 600


async def test_asking_for_3607_seconds_yields_a_token_valid_for_a_year(raw: Raw) -> None:
    await make_account(raw, "kubelet-like")
    answer = await mint(raw, "kubelet-like", seconds=3607)
    claims = decode_unverified(answer["status"]["token"])
    assert claims["exp"] - claims["iat"] == 365 * 24 * 3600
    other = decode_unverified((await mint(raw, "kubelet-like", seconds=3608))["status"]["token"])
    assert other["exp"] - other["iat"] == 3608


async def test_each_token_has_its_own_credential_id(raw: Raw) -> None:
    await make_account(raw, "robot")
    ids = {decode_unverified((await mint(raw, "robot"))["status"]["token"])["jti"] for _ in range(5)}
    assert len(ids) == 5


async def test_token_for_a_missing_account_is_404(raw: Raw) -> None:
    status, body = await raw.call("POST", SA_TOKEN.format("nobody"), token_request())
    assert (status, body["message"]) == (404, 'serviceaccounts "nobody" not found')


async def test_a_token_authenticates_as_its_account_until_the_account_is_deleted(raw: Raw) -> None:
    account = await make_account(raw, "robot")
    token = (await mint(raw, "robot"))["status"]["token"]
    jti = decode_unverified(token)["jti"]
    status, review = await whoami(raw, token)
    assert status == 201
    assert review["status"]["userInfo"] == {
        "username": "system:serviceaccount:default:robot",
        "uid": account["metadata"]["uid"],
        "groups": ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"],
        "extra": {"authentication.kubernetes.io/credential-id": [f"JTI={jti}"]},
    }
    await raw.ok("DELETE", "/api/v1/namespaces/default/serviceaccounts/robot")
    assert (await whoami(raw, token))[0] == 401
    await make_account(raw, "robot")  # a new account of the same name does not revive old tokens
    assert (await whoami(raw, token))[0] == 401


async def test_a_token_for_another_audience_does_not_authenticate(raw: Raw) -> None:
    await make_account(raw, "robot")
    token = (await mint(raw, "robot", audiences=["vault"]))["status"]["token"]
    assert (await whoami(raw, token))[0] == 401


async def test_expired_and_tampered_tokens_are_401() -> None:
    now = [time.time()]
    async with SimServer(clock=lambda: now[0]) as sim:
        from aiohttp import ClientSession

        async with ClientSession() as session:
            raw = Raw(sim, session)
            await make_account(raw, "robot")
            token = (await mint(raw, "robot", seconds=600))["status"]["token"]
            assert (await whoami(raw, token))[0] == 201
            head, payload, signature = token.split(".")
            assert (await whoami(raw, f"{head}.{payload}.{signature[::-1]}"))[0] == 401
            now[0] += 601
            assert (await whoami(raw, token))[0] == 401


async def test_a_token_bound_to_a_secret_dies_with_the_secret(raw: Raw) -> None:
    await make_account(raw, "robot")
    secret = await raw.ok("POST", "/api/v1/namespaces/default/secrets", {"metadata": {"name": "anchor"}})
    bound = {"kind": "Secret", "apiVersion": "v1", "name": "anchor", "uid": secret["metadata"]["uid"]}
    token = (await mint(raw, "robot", bound=bound))["status"]["token"]
    assert decode_unverified(token)["kubernetes.io"]["secret"]["name"] == "anchor"
    assert (await whoami(raw, token))[0] == 201
    await raw.ok("DELETE", "/api/v1/namespaces/default/secrets/anchor")
    assert (await whoami(raw, token))[0] == 401


async def test_token_review_reports_the_user_or_an_error(sim: SimServer, raw: Raw) -> None:
    await make_account(raw, "robot")
    token = (await mint(raw, "robot"))["status"]["token"]
    review = await raw.ok("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                          {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
    assert review["status"]["authenticated"] is True
    assert review["status"]["user"]["username"] == "system:serviceaccount:default:robot"
    bad = await raw.ok("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                       {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "x"}})
    assert bad["status"]["authenticated"] is False
    assert bad["status"]["error"]
