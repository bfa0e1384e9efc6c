"""Serving certificates for the webhooks behind a Service (`zsp_operator.serving.pki`), without I/O.

Covered:
- the DNS names a Service is reached by, in the order a certificate lists them;
- whether stored material (ca.crt, tls.crt, tls.key) can still be served: missing or
  unreadable keys, a key of another certificate, names not covered, a certificate of another
  CA, not yet valid, expiring within the renewal margin (at and just past the boundary),
  and a CA bundle that also holds a previous CA;
- the CA bundle after a rotation: the new CA first, previous CAs kept only while valid.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from cryptography import x509

from zsp_operator.serving.pki import (
    CA_CERT,
    LOOPBACK,
    RENEWAL_MARGIN,
    TLS_CERT,
    TLS_KEY,
    ServingPki,
    ca_bundle,
    certificate_problem,
    issue_serving_pki,
    service_dns_names,
)

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
NAMES = service_dns_names("zsp-system", "zsp-operator-webhook")
YEAR = dt.timedelta(days=365)


def _material(pki: ServingPki) -> dict[str, bytes]:
    return {CA_CERT: pki.ca_cert, TLS_CERT: pki.serving_cert, TLS_KEY: pki.serving_key}


def _issued(
    valid_for: dt.timedelta = YEAR, at: dt.datetime = NOW, hosts: tuple[str, ...] = NAMES
) -> ServingPki:
    return issue_serving_pki(hosts, common_name=hosts[0], now=at, valid_for=valid_for)


GOOD = _issued()
OTHER = _issued()


def test_a_service_is_reached_by_its_short_and_qualified_names() -> None:
    assert service_dns_names("ops", "hooks") == (
        "hooks",
        "hooks.ops",
        "hooks.ops.svc",
        "hooks.ops.svc.cluster.local",
    )
    assert service_dns_names("ops", "hooks", "corp.example")[-1] == "hooks.ops.svc.corp.example"


def _without(key: str) -> dict[str, bytes]:
    material = _material(GOOD)
    del material[key]
    return material


CASES: list[tuple[str, Callable[[], dict[str, bytes]], dt.datetime, str | None]] = [
    ("fresh certificate for the Service", lambda: _material(GOOD), NOW, None),
    ("no key", lambda: _without(TLS_KEY), NOW, "missing tls.key"),
    ("empty Secret", dict, NOW, "missing ca.crt, tls.crt, tls.key"),
    ("unreadable CA", lambda: {**_material(GOOD), CA_CERT: b"junk"}, NOW, "ca.crt is not a PEM certificate"),
    (
        "unreadable certificate",
        lambda: {
            **_material(GOOD),
            TLS_CERT: b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        },
        NOW,
        "tls.crt is not a PEM certificate",
    ),
    (
        "unreadable key",
        lambda: {**_material(GOOD), TLS_KEY: b"junk"},
        NOW,
        "tls.key is not an unencrypted PEM private key",
    ),
    (
        "key of another certificate",
        lambda: {**_material(GOOD), TLS_KEY: OTHER.serving_key},
        NOW,
        "tls.key does not belong to tls.crt",
    ),
    (
        "certificate for other names",
        lambda: _material(_issued(hosts=LOOPBACK)),
        NOW,
        "tls.crt does not cover zsp-operator-webhook, zsp-operator-webhook.zsp-system, "
        "zsp-operator-webhook.zsp-system.svc, zsp-operator-webhook.zsp-system.svc.cluster.local",
    ),
    (
        "certificate of another CA",
        lambda: {**_material(GOOD), CA_CERT: OTHER.ca_cert},
        NOW,
        "tls.crt is not signed by a currently valid certificate of ca.crt",
    ),
    (
        "not yet valid",
        lambda: _material(_issued(at=NOW + dt.timedelta(days=2))),
        NOW,
        "tls.crt is not valid before 2026-03-03T11:55:00+00:00",
    ),
    (
        "expiring in ten days",
        lambda: _material(_issued(valid_for=dt.timedelta(days=10))),
        NOW,
        "tls.crt expires at 2026-03-11T12:00:00+00:00, within the renewal margin of 30 days",
    ),
    (
        "exactly at the renewal margin",
        lambda: _material(GOOD),
        NOW + YEAR - RENEWAL_MARGIN,
        "tls.crt expires at 2027-03-01T12:00:00+00:00, within the renewal margin of 30 days",
    ),
    (
        "a second before the renewal margin",
        lambda: _material(GOOD),
        NOW + YEAR - RENEWAL_MARGIN - dt.timedelta(seconds=1),
        None,
    ),
    (
        "CA bundle holding a previous CA too",
        lambda: {**_material(GOOD), CA_CERT: OTHER.ca_cert + GOOD.ca_cert},
        NOW,
        None,
    ),
]


@pytest.mark.parametrize(("material", "now", "problem"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_stored_material_is_served_only_while_it_fits(
    material: Callable[[], dict[str, bytes]], now: dt.datetime, problem: str | None
) -> None:
    assert certificate_problem(material(), NAMES, now) == problem


def _subjects(bundle: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle)


def test_the_ca_bundle_puts_the_new_ca_first_and_keeps_a_previous_one_while_valid() -> None:
    new, old = _issued(), _issued(valid_for=dt.timedelta(days=10))
    bundle = _subjects(ca_bundle(new.ca_cert, old.ca_cert, NOW))
    assert bundle == [
        x509.load_pem_x509_certificate(new.ca_cert),
        x509.load_pem_x509_certificate(old.ca_cert),
    ]


@pytest.mark.parametrize(
    ("previous", "now"),
    [
        pytest.param(None, NOW, id="no previous CA"),
        pytest.param(b"junk", NOW, id="unreadable previous CA"),
        pytest.param(GOOD.ca_cert, NOW, id="the same CA again"),
        pytest.param(OTHER.ca_cert, NOW + 2 * YEAR, id="previous CA expired"),
    ],
)
def test_the_ca_bundle_holds_only_the_new_ca_when_nothing_else_is_trustworthy(
    previous: bytes | None, now: dt.datetime
) -> None:
    assert _subjects(ca_bundle(GOOD.ca_cert, previous, now)) == [x509.load_pem_x509_certificate(GOOD.ca_cert)]


def test_a_service_in_a_long_namespace_gets_a_certificate_for_all_its_names() -> None:
    names = service_dns_names("n" * 63, "zsp-operator-webhook")
    pki = issue_serving_pki(names, common_name=names[2], now=NOW, valid_for=YEAR)
    assert certificate_problem(_material(pki), names, NOW) is None
    assert len(x509.load_pem_x509_certificate(pki.ca_cert).subject.rfc4514_string()) <= len("CN=") + 64
