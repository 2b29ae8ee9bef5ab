"""The relay's certificates, derived from what members already hold.

Every member derives the same network CA from the network secret (HKDF ->
Ed25519 seed, `Codec.relay_ca_seed`), with a fixed name, serial and validity,
so the CA certificate is identical everywhere and never travels.  Each
gateway issues its own site certificate with it: subject = the site name,
subject key = the site's signing key (z2z.app.keys).  A TLS peer whose
certificate chains to the CA holds the network secret (membership); the
runtime then checks the certificate's key against the key trusted for that
site (pinned or learned on first use, z2z.core.security), as for DHT values.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

_EPOCH = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
_FOREVER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
SITE_CERT_DAYS = 3650


def network_ca(seed: bytes, network: str) -> tuple[Ed25519PrivateKey, x509.Certificate]:
    """The network's CA key and self-signed certificate, the same on every member."""
    key = Ed25519PrivateKey.from_private_bytes(seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"z2z relay CA {network}"[:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(_EPOCH)
        .not_valid_after(_FOREVER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, None)
    )
    return key, cert


def site_certificate(
    ca_key: Ed25519PrivateKey,
    ca_cert: x509.Certificate,
    site: str,
    site_key: Ed25519PrivateKey,
    now: float,
) -> x509.Certificate:
    """This site's certificate: its name and signing key, signed by the network CA."""
    start = datetime.datetime.fromtimestamp(now, tz=datetime.UTC) - datetime.timedelta(days=1)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, site)]))
        .issuer_name(ca_cert.subject)
        .public_key(site_key.public_key())
        .serial_number(int(now * 1000))
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=SITE_CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, None)
    )


def peer_identity(der: bytes) -> tuple[str, bytes]:
    """(site, raw Ed25519 key) of a peer certificate that TLS already verified against the CA."""
    cert = x509.load_der_x509_certificate(der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise ValueError("the certificate names no single site")
    key = cert.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the certificate's key is not Ed25519")
    return str(names[0].value), key.public_bytes(Encoding.Raw, PublicFormat.Raw)
