"""Server certificates: a self-signed one for trials, and SHA-256 fingerprints."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DEFAULT_NAMES = ("localhost", "127.0.0.1")


def fingerprint(cert: x509.Certificate) -> str:
    """The certificate's SHA-256 fingerprint as 64 lower-case hex digits (as `subscriber set` stores it)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def fingerprint_file(path: Path) -> str:
    """The SHA-256 fingerprint of the first certificate in a PEM file."""
    return fingerprint(x509.load_pem_x509_certificate(path.read_bytes()))


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def selfsigned(certfile: Path, keyfile: Path, names: list[str], *, days: int = 825) -> str:
    """Write a self-signed ECDSA P-256 certificate for `names` (plus localhost and 127.0.0.1) and its
    key (mode 0600); return the certificate's SHA-256 fingerprint."""
    all_names = list(dict.fromkeys([*names, *DEFAULT_NAMES]))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, all_names[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(_san(all_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    certfile.parent.mkdir(parents=True, exist_ok=True)
    keyfile.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # The key is written readable by its owner only, and both files replace old ones atomically.
    tmp_key = keyfile.with_name(keyfile.name + ".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    tmp_cert = certfile.with_name(certfile.name + ".tmp")
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_key, keyfile)
    os.replace(tmp_cert, certfile)
    return fingerprint(cert)
