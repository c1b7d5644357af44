"""A throwaway certificate authority for the stack, and one server certificate signed by it.

Made once per stack (under <stack>/tls) with the openssl command line, so that the three servers
can offer TLS next to their plain connections and the tests can check certificates for real:
the server certificate names 127.0.0.1 and localhost, which is where every server listens.
Each server gets its own copy of the certificate and key, owned by its service user, because
PostgreSQL refuses a key that anyone else can read.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devstack.system import chown_tree, run, which

DAYS = "3650"
_CA_EXTENSIONS = (
    "basicConstraints = critical, CA:TRUE\n"
    "keyUsage = critical, keyCertSign, cRLSign\n"
    "subjectKeyIdentifier = hash\n"
)
_SERVER_EXTENSIONS = (
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature, keyEncipherment\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
    "subjectKeyIdentifier = hash\n"
    "authorityKeyIdentifier = keyid\n"
)


@dataclass(frozen=True)
class Certificates:
    """The stack's CA certificate, and the server certificate and key it signed (PEM)."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def key(self) -> Path:
        return self.folder / "server.key"

    def complete(self) -> bool:
        return all(p.exists() for p in (self.ca, self.ca_key, self.cert, self.key))


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A new self-signed CA in ``folder``: (certificate, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "ca.pem", folder / "ca.key"
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        ext = Path(tmp) / "ca.ext"
        ext.write_text(f"[req]\ndistinguished_name = dn\n[dn]\n[ca]\n{_CA_EXTENSIONS}")
        run(
            [
                which("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                "-days", DAYS, "-subj", f"/CN={name}", "-config", str(ext), "-extensions", "ca",
                "-keyout", str(Path(tmp) / "ca.key"), "-out", str(Path(tmp) / "ca.pem"),
            ]
        )  # fmt: skip
        _publish(Path(tmp) / "ca.key", key, 0o600)
        _publish(Path(tmp) / "ca.pem", cert, 0o644)
    return cert, key


def ensure_certificates(folder: Path) -> Certificates:
    """The stack's CA and server certificate, made the first time (kept afterwards, so that
    clients holding the CA keep trusting the servers across restarts)."""
    certs = Certificates(folder)
    if certs.complete():
        return certs
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    if not (certs.ca.exists() and certs.ca_key.exists()):
        make_ca(folder, "pg2maria devstack CA")
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        t = Path(tmp)
        (t / "server.ext").write_text(_SERVER_EXTENSIONS)
        run(
            [
                which("openssl"), "req", "-new", "-newkey", "rsa:2048", "-nodes",
                "-subj", "/CN=localhost",
                "-keyout", str(t / "server.key"), "-out", str(t / "server.csr"),
            ]
        )  # fmt: skip
        run(
            [
                which("openssl"), "x509", "-req", "-sha256", "-days", DAYS,
                "-in", str(t / "server.csr"),
                "-CA", str(certs.ca), "-CAkey", str(certs.ca_key),
                "-set_serial", "0x" + secrets.token_hex(16),
                "-extfile", str(t / "server.ext"),
                "-out", str(t / "server.pem"),
            ]
        )  # fmt: skip
        _publish(t / "server.key", certs.key, 0o600)
        _publish(t / "server.pem", certs.cert, 0o644)
    return certs


def install(certs: Certificates, folder: Path, user: str | None) -> tuple[Path, Path, Path]:
    """Copies of the CA, the server certificate and its key in a server's own ``folder``,
    owned by its service ``user``, the key readable by that user alone: (ca, cert, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    copies = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    for source, target, mode in zip(
        (certs.ca, certs.cert, certs.key), copies, (0o644, 0o644, 0o600), strict=True
    ):
        if not target.exists() or target.read_bytes() != source.read_bytes():
            _publish_copy(source, target, mode)
        target.chmod(mode)
    chown_tree(folder, user)
    return copies


def _publish(made: Path, target: Path, mode: int) -> None:
    made.chmod(mode)
    os.replace(made, target)


def _publish_copy(source: Path, target: Path, mode: int) -> None:
    partial = target.with_name(target.name + ".new")
    shutil.copyfile(source, partial)
    _publish(partial, target, mode)
