"""What a secure local broker (`tamiyo broker up --secure`) runs with, in ``<data-dir>/security/`` (0700).

- TLS: a CA made for this broker alone and a broker certificate it signs (CN=broker, SAN 127.0.0.1,
  localhost), both made with `cryptography`; Kafka 4.x reads them as PEM stores.  The CA's private
  key is not kept: when the certificate nears its end, `up` makes a new CA and certificate.
- SASL/SCRAM-SHA-512 credentials: one random password per service role (`ROLES`), bootstrapped into
  the cluster metadata when the storage is formatted; each role's file
  ``credentials/<role>.json`` (0600) holds what a client needs (`tamiyo --kafka-credentials FILE`).
- The broker itself (controller and inter-broker listeners) authenticates by TLS client certificate
  as principal ``broker``; the client listener accepts SCRAM only.

Files with secrets are 0600; nothing here ever prints a secret, only paths.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROLES: tuple[str, ...] = ("admin", "learner", "replay", "actor", "serve")
BROKER_PRINCIPAL = "broker"
SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192
CERT_DAYS = 365
RENEW_WITHIN = dt.timedelta(days=7)


@dataclass(frozen=True)
class SecurityFiles:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def keystore(self) -> Path:  # the broker's key and certificate chain, one PEM file (0600)
        return self.directory / "broker.pem"

    def credentials(self, role: str) -> Path:
        return self.directory / "credentials" / f"{role}.json"

    def exists(self) -> bool:
        return self.ca.exists() and self.keystore.exists() and all(self.credentials(r).exists() for r in ROLES)


def ensure_security(directory: Path) -> SecurityFiles:
    """TLS material (fresh if missing or near its end) and the roles' credentials (made once).  A role's
    file is all a client needs besides the bootstrap address (`tamiyo ... --kafka-credentials FILE`)."""
    files = SecurityFiles(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    (directory / "credentials").mkdir(exist_ok=True, mode=0o700)
    if not _certificate_fresh(files.keystore):
        _write_tls(files)
    for role in ROLES:
        if not files.credentials(role).exists():
            secret = {"username": role, "password": secrets.token_urlsafe(24), "sasl_mechanism": SCRAM_MECHANISM,
                      "security_protocol": "SASL_SSL", "ssl_cafile": str(files.ca.resolve())}  # fmt: skip
            write_private(files.credentials(role), json.dumps(secret).encode())
    return files


def read_credentials(path: Path) -> dict[str, str]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("username", "password")):
        raise ValueError(f"{path}: not a credentials file (username, password)")
    return data


def scram_format_arguments(files: SecurityFiles) -> list[str]:
    """``--add-scram`` arguments for `kafka-storage format`: each role's SCRAM-SHA-512 salted password
    (RFC 5802 Hi = PBKDF2-HMAC-SHA-512), so the plain passwords never appear on a command line."""
    args: list[str] = []
    for role in ROLES:
        password = read_credentials(files.credentials(role))["password"]
        salt = secrets.token_bytes(16)
        salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, SCRAM_ITERATIONS)
        b64 = base64.b64encode
        args += ["--add-scram", f"{SCRAM_MECHANISM}=[name={role},iterations={SCRAM_ITERATIONS},"
                 f'salt="{b64(salt).decode()}",saltedpassword="{b64(salted).decode()}"]']  # fmt: skip
    return args


def write_private(path: Path, data: bytes) -> None:
    """``data`` to ``path`` readable by its owner only, replacing it atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _certificate_fresh(keystore: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(keystore.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_WITHIN


def _write_tls(files: SecurityFiles) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Tamiyo local broker CA {secrets.token_hex(4)}")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BROKER_PRINCIPAL)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem = serialization.Encoding.PEM
    write_private(files.keystore, key_pem + cert.public_bytes(pem) + ca.public_bytes(pem))
    files.ca.write_bytes(ca.public_bytes(pem))  # public: what clients verify the broker with
    files.ca.chmod(0o644)
