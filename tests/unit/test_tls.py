"""The self-signed certificate made at ``bulwark init``."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.system import tls

HOSTNAME = "backup-01"
FINGERPRINT = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){31}")


@pytest.fixture
def made(tmp_path: Path) -> tuple[Path, Path, str]:
    folder = tmp_path / "tls"
    folder.mkdir()
    cert, key = folder / "cert.pem", folder / "key.pem"
    return cert, key, tls.create_self_signed(cert, key, HOSTNAME)


def test_certificate_and_key(made: tuple[Path, Path, str]) -> None:
    cert_path, key_path, _ = made
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    assert cert.public_key() == key.public_key()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == HOSTNAME
    assert cert.issuer == cert.subject
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
    assert cert.not_valid_after_utc - now > datetime.timedelta(days=tls.VALID_DAYS - 1)
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and not basic.value.ca


def test_subject_alternative_names(made: tuple[Path, Path, str]) -> None:
    cert = x509.load_pem_x509_certificate(made[0].read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {HOSTNAME, "localhost"}
    ips = set(san.get_values_for_type(x509.IPAddress))
    assert ipaddress.ip_address("127.0.0.1") in ips
    assert ipaddress.ip_address("::1") in ips


def test_key_file_is_private(made: tuple[Path, Path, str]) -> None:
    _, key_path, _ = made
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert sorted(p.name for p in key_path.parent.iterdir()) == ["cert.pem", "key.pem"]  # no temp files left


def test_key_file_is_private_whatever_the_umask_and_old_file(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    key.write_text("an old key, readable by all")
    key.chmod(0o644)
    old = os.umask(0)
    try:
        tls.create_self_signed(cert, key, HOSTNAME)
    finally:
        os.umask(old)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_fingerprint_format(made: tuple[Path, Path, str]) -> None:
    cert_path, _, fingerprint = made
    assert FINGERPRINT.fullmatch(fingerprint), fingerprint
    assert tls.fingerprint(cert_path.read_bytes()) == fingerprint


def test_each_certificate_is_new(tmp_path: Path, made: tuple[Path, Path, str]) -> None:
    again = tls.create_self_signed(tmp_path / "c2.pem", tmp_path / "k2.pem", HOSTNAME)
    assert again != made[2]
    assert (tmp_path / "k2.pem").read_bytes() != made[1].read_bytes()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_fingerprint_matches_openssl(made: tuple[Path, Path, str]) -> None:
    cert_path, key_path, fingerprint = made
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    label, _, value = out.partition("=")
    assert label.lower() == "sha256 fingerprint", out
    assert value.lower() == fingerprint
    # openssl accepts the pair as a matching key and certificate, too.
    check = subprocess.run(
        ["openssl", "x509", "-noout", "-checkend", "86400", "-in", str(cert_path)], capture_output=True, check=False
    )
    assert check.returncode == 0
    pub_from_cert = subprocess.run(
        ["openssl", "x509", "-noout", "-pubkey", "-in", str(cert_path)], capture_output=True, check=True
    ).stdout
    pub_from_key = subprocess.run(
        ["openssl", "pkey", "-pubout", "-in", str(key_path)], capture_output=True, check=True
    ).stdout
    assert pub_from_cert == pub_from_key
