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
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tamiyo.contracts.atomic_files import write_atomically

# "host": the trained hosts' own client (writes `state`, reads `commands`), so no host needs `admin`.
ROLES: tuple[str, ...] = ("admin", "learner", "replay", "actor", "serve", "host")
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


def ensure_security(directory: Path, formatted: bool = False) -> SecurityFiles:
    """TLS material (fresh if missing, near its end or not signed by ``ca.pem``) and the roles'
    credentials (made once).  A role's file is all a client needs besides the bootstrap address
    (`tamiyo ... --kafka-credentials FILE`).  ``formatted``: the broker's storage already holds the
    roles' SCRAM credentials, so a lost credentials file cannot be made again (ValueError)."""
    files = SecurityFiles(directory)
    for d in (directory, directory / "credentials"):
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        d.chmod(0o700)  # mkdir's mode does nothing to a directory that was already there
    if not _certificate_fresh(files):
        _write_tls(files)
    missing = [r for r in ROLES if not files.credentials(r).exists()]
    if formatted and missing:
        raise ValueError(
            f"{files.credentials(missing[0])} is missing and the broker's storage was formatted with its SCRAM "
            "credentials: restore the file, or start a broker on a new --data-dir"
        )
    for role in missing:
        secret = {"username": role, "password": secrets.token_urlsafe(24), "sasl_mechanism": SCRAM_MECHANISM,
                  "security_protocol": "SASL_SSL", "ssl_cafile": str(files.ca.resolve())}  # fmt: skip
        write_private(files.credentials(role), json.dumps(secret).encode())
    return files


def read_credentials(path: Path) -> dict[str, str]:
    """A role's credentials; ValueError (one line) if the file is missing, unreadable or not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read credentials {path}: {err}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("username", "password")):
        raise ValueError(f"{path}: not a credentials file (username, password)")
    return data


def scram_format_arguments(files: SecurityFiles) -> list[str]:
    """``--add-scram`` arguments for `kafka-storage format`: each role's SCRAM-SHA-512 salted password
    (RFC 5802 Hi = PBKDF2-HMAC-SHA-512).  A salted password is as good as the password for logging in:
    these go to the format command in an argument file (`write_argument_file`), never on its command line."""
    args: list[str] = []
    for role in ROLES:
        password = read_credentials(files.credentials(role))["password"]
        salt = secrets.token_bytes(16)
        salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, SCRAM_ITERATIONS)
        b64 = base64.b64encode
        args += ["--add-scram", f"{SCRAM_MECHANISM}=[name={role},iterations={SCRAM_ITERATIONS},"
                 f'salt="{b64(salt).decode()}",saltedpassword="{b64(salted).decode()}"]']  # fmt: skip
    return args


def write_argument_file(directory: Path, args: list[str]) -> Path:
    """``args`` one per line in a 0600 file of ``directory``, for a Java tool's ``@file`` argument."""
    if any("\n" in a for a in args):
        raise ValueError("an argument with a newline cannot go into an argument file")
    path = directory / f".args-{secrets.token_hex(8)}"
    write_private(path, "".join(f"{a}\n" for a in args).encode())
    return path


def write_private(path: Path, data: bytes) -> None:
    """``data`` to ``path`` readable by its owner only, replacing it atomically (and durably)."""
    write_atomically(path, data, 0o600)


def _certificate_fresh(files: SecurityFiles) -> bool:
    """The broker certificate exists, is signed by the CA in ``ca.pem`` and has more than a week left."""
    try:
        cert = x509.load_pem_x509_certificate(files.keystore.read_bytes())
        ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
        cert.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    return min(cert.not_valid_after_utc, ca.not_valid_after_utc) - dt.datetime.now(dt.UTC) > RENEW_WITHIN


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
    # The CA first: a crash between the two leaves a keystore that `_certificate_fresh` sees is not
    # signed by ca.pem, so the next `up` makes both again.
    write_private(files.ca, ca.public_bytes(pem))
    files.ca.chmod(0o644)  # public: what clients verify the broker with
    write_private(files.keystore, key_pem + cert.public_bytes(pem) + ca.public_bytes(pem))
