"""The box's lab CA and the server certificate of its API endpoints.

Contract: ``ensure(paths, region)`` leaves ``ca.pem``/``ca.key`` (a per-box CA, P-256) and
``tls.pem``/``tls.key`` (the leaf followed by the CA, for the endpoint names the stock agents
use by default, plus 127.0.0.1 for hacloud's own host-side client). Private keys are written
0600 and never read back when others could read them (HAC697). An existing CA is kept (guests
already trust it); the leaf is reissued when it is missing, names other endpoints, is not
signed by this CA or expires within ``RENEW_BEFORE``. Made with ``cryptography`` only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hacloud.errors import HacloudError
from hacloud_aws.box.layout import BoxPaths

CA_DAYS = 3650  # the CA lives as long as the box directory; guests pin it at first boot
LEAF_DAYS = 397  # the longest validity public CAs may issue (CA/Browser Forum), so tools accept it
RENEW_BEFORE = datetime.timedelta(days=7)
HOST_ADDRESS = "127.0.0.1"


def endpoint_names(region: str) -> list[str]:
    """The names botocore and the AWS CLI use by default for EC2, STS (regional and global) and IAM."""
    return [
        f"ec2.{region}.amazonaws.com",
        f"sts.{region}.amazonaws.com",
        "sts.amazonaws.com",
        "iam.amazonaws.com",
    ]


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as 0600 from the first byte (created under a temporary name,
    then renamed over, so no reader ever sees a partial or world-readable key)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _read_private(path: Path) -> bytes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise HacloudError(
            f"{path} (a private key of the AWS box) is readable by other users (mode {mode:o})",
            f"remove {path.parent} and start the box again: a new CA and key are made",
            code="HAC697",
        )
    return path.read_bytes()


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _make_ca(paths: BoxPaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"hacloud AWS box CA ({paths.root})"[:64])])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(paths.ca_key, _key_pem(key))
    _write_public(paths.ca_pem, _pem(cert))
    return cert, key


def _load_ca(paths: BoxPaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    if not (paths.ca_pem.exists() and paths.ca_key.exists()):
        return None
    key = serialization.load_pem_private_key(_read_private(paths.ca_key), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    return x509.load_pem_x509_certificate(paths.ca_pem.read_bytes()), key


def _leaf_ok(paths: BoxPaths, ca: x509.Certificate, region: str) -> bool:
    if not (paths.tls_pem.exists() and paths.tls_key.exists()):
        return False
    _read_private(paths.tls_key)  # refuse a readable key even when the leaf is fine
    leaf = x509.load_pem_x509_certificates(paths.tls_pem.read_bytes())[0]
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = sorted(sans.get_values_for_type(x509.DNSName))
    return names == sorted(endpoint_names(region)) and leaf.not_valid_after_utc - _now() > RENEW_BEFORE


def _make_leaf(
    paths: BoxPaths, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, region: str
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    names = endpoint_names(region)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans.append(x509.IPAddress(ipaddress.ip_address(HOST_ADDRESS)))
    now = _now()
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + datetime.timedelta(days=LEAF_DAYS), ca.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(paths.tls_key, _key_pem(key))
    _write_public(paths.tls_pem, _pem(leaf) + _pem(ca))


def ensure(paths: BoxPaths, region: str) -> None:
    """Make or keep the CA and the endpoint certificate (see the module contract)."""
    loaded = _load_ca(paths)
    ca, ca_key = loaded if loaded is not None else _make_ca(paths)
    if not _leaf_ok(paths, ca, region):
        _make_leaf(paths, ca, ca_key, region)


def server_context(paths: BoxPaths) -> ssl.SSLContext:
    """The TLS context every API listener serves (TLS 1.2 or later, the leaf and the CA)."""
    _read_private(paths.tls_key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(paths.tls_pem, paths.tls_key)
    return ctx


def ensure_ssh_key(paths: BoxPaths) -> str:
    """The box key pair (``id_ed25519``, 0600, OpenSSH format): imported into EC2 as the
    layout's key pair, so guests accept it. Returns the public key line."""
    pub_path = paths.ssh_key.with_name(paths.ssh_key.name + ".pub")
    if paths.ssh_key.exists() and pub_path.exists():
        _read_private(paths.ssh_key)
        return pub_path.read_text(encoding="ascii").strip()
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = public.decode("ascii") + " hacloud-box"
    _write_private(paths.ssh_key, private)
    _write_public(pub_path, (line + "\n").encode("ascii"))
    return line
