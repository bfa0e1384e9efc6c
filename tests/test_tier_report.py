"""The pure parts of the tier report: which story a test is on either tier, which resource a
refused write was to, and whose token made it."""

from __future__ import annotations

import base64
import json

import pytest

from tier_report import OPERATOR_SUBJECT, resource_of, story_key, token_subject


@pytest.mark.parametrize(
    ("nodeid", "tier", "key"),
    [
        ("t.py::test_x[sim]", "sim", "t.py::test_x[*]"),
        ("t.py::test_x[envtest]", "envtest", "t.py::test_x[*]"),
        ("t.py::test_x[envtest-role]", "envtest", "t.py::test_x[*-role]"),
        ("t.py::test_x[sim-role]", "sim", "t.py::test_x[*-role]"),
        ("t.py::test_x[after-token-sim]", "sim", "t.py::test_x[after-token-*]"),
        ("t.py::test_plain", "sim", "t.py::test_plain"),
    ],
)
def test_the_same_story_has_the_same_key_on_both_tiers(nodeid: str, tier: str, key: str) -> None:
    assert story_key(nodeid, tier) == key


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("/api/v1/namespaces/ns-3fa2/serviceaccounts/x/token", "serviceaccounts/token"),
        ("/api/v1/namespaces/ns-3fa2/serviceaccounts", "serviceaccounts"),
        ("/api/v1/namespaces/ns-3fa2", "namespaces"),
        ("/api/v1/namespaces", "namespaces"),
        ("/apis/zsp.dev/v1alpha1/namespaces/a/accessrequests/r/status", "accessrequests/status"),
        ("/apis/rbac.authorization.k8s.io/v1/clusterroles/view", "clusterroles"),
        ("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "selfsubjectaccessreviews"),
        ("/apis/batch/v1/namespaces/ci/jobs/deploy/status", "jobs/status"),
    ],
)
def test_a_refused_write_is_named_by_resource_without_names(path: str, resource: str) -> None:
    assert resource_of(path) == resource


def _jwt(claims: dict[str, object]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{body}.signature"


@pytest.mark.parametrize(
    ("token", "subject"),
    [
        (_jwt({"sub": OPERATOR_SUBJECT}), OPERATOR_SUBJECT),
        (_jwt({"sub": "system:serviceaccount:ci:pipeline"}), "system:serviceaccount:ci:pipeline"),
        (_jwt({"iss": "no subject"}), None),
        ("a-static-token-not-a-jwt", None),
        ("a.b!.c", None),
        (None, None),
    ],
)
def test_the_operator_is_told_apart_by_its_token_subject(token: str | None, subject: str | None) -> None:
    assert token_subject(token) == subject
