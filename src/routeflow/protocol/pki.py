"""Certificates for RF-protocol peers on other hosts: a CA, and one credential per identity.

Over a ``tls:`` listener peers use mutual TLS. Each identity of
:mod:`routeflow.protocol.auth` (``server``, ``controller``, ``operator``,
``client-<VM>``) has a certificate whose common name is that identity, signed
by the host's own CA; the server believes the name in a peer's certificate,
never the one in its hello, and a peer believes a server only if its
certificate, signed by the same CA, names ``server``.

Everything lives in ``<key dir>/tls``: ``ca.crt`` and ``ca.key``, and
``<identity>.crt`` with ``<identity>.key`` for each identity. Keys are private
(0600 in a 0700 directory). A remote VM's host needs three files: ``ca.crt``
and its own ``client-<VM>.crt`` and ``.key``.
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from routeflow.private import private_dir, write_private
from routeflow.protocol.auth import AuthError

#: The identity a server's certificate names.
SERVER = "server"
#: The identity of OpenFlow switches connecting to the RF-Controller over ``ssl:``: Open
#: vSwitch presents one credential for all its bridges.
SWITCH = "switch"
def switch_identity(dpid: int) -> str:
    """The identity of one switch's own credential: it may connect as datapath ``dpid`` alone."""
    return f"{SWITCH}-{dpid:016x}"


#: Identities that accept TLS connections: the RF-Server, and the RF-Controller (from switches).
_SERVES = (SERVER, "controller")
#: How long what :func:`ensure` makes is valid: the CA, and each peer's certificate.
CA_DAYS = 3650
PEER_DAYS = 825


class PkiError(AuthError):
    """A certificate or its key is missing, unreadable or not what it must be."""


def tls_dir(key_dir: Path) -> Path:
    return key_dir / "tls"


@dataclass(frozen=True)
class Credential:
    """One identity's certificate and key files."""

    identity: str
    cert: Path
    key: Path


def credential(key_dir: Path, identity: str) -> Credential:
    base = tls_dir(key_dir)
    return Credential(identity, base / f"{identity}.crt", base / f"{identity}.key")


def ensure(key_dir: Path, identities: Iterable[str]) -> list[str]:
    """Make the CA if there is none, and a credential for each of ``identities``
    that has none yet; return the identities made (``"ca"`` for the CA). Needs
    the CA's key only when something is missing."""
    # Imported here: only hosts that issue certificates need the library's X.509 half.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    base = tls_dir(key_dir)
    private_dir(key_dir)
    private_dir(base)
    made: list[str] = []
    ca_cert_path, ca_key_path = base / "ca.crt", base / "ca.key"
    now = datetime.datetime.now(datetime.timezone.utc)

    def pem_key(key: ec.EllipticCurvePrivateKey) -> str:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "routeflow"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    if not ca_cert_path.exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (x509.CertificateBuilder().subject_name(name("routeflow CA")).issuer_name(name("routeflow CA"))
                   .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=True, crl_sign=True, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .sign(ca_key, hashes.SHA256()))
        write_private(ca_key_path, pem_key(ca_key))
        write_private(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM).decode())
        made.append("ca")
    missing = [ident for ident in identities if not credential(key_dir, ident).cert.exists()]
    if not missing:
        return made
    try:
        issuer_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"cannot issue certificates for {', '.join(missing)}: the CA ({ca_key_path}) "
                       f"cannot be read: {exc}") from None
    if not isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{ca_key_path} is not the EC key routeflow makes for its CA")
    for ident in missing:
        key = ec.generate_private_key(ec.SECP256R1())
        usage = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if ident in _SERVES else [])
        cert = (x509.CertificateBuilder().subject_name(name(ident)).issuer_name(ca_cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=PEER_DAYS))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
                .sign(issuer_key, hashes.SHA256()))
        cred = credential(key_dir, ident)
        write_private(cred.key, pem_key(key))
        write_private(cred.cert, cert.public_bytes(serialization.Encoding.PEM).decode())
        made.append(ident)
    return made


def _context(protocol: int, key_dir: Path, identity: str) -> ssl.SSLContext:
    cred = credential(key_dir, identity)
    # Our CA and nothing else: not the system's (a certificate any public CA signed
    # must not pass for our server), and loading those costs 35 ms per connection.
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        ctx.load_verify_locations(cafile=str(tls_dir(key_dir) / "ca.crt"))
        ctx.load_cert_chain(str(cred.cert), str(cred.key))
    except (OSError, ssl.SSLError) as exc:
        raise PkiError(f"cannot load the TLS credential of {identity} from {tls_dir(key_dir)}: {exc} "
                       f"(make them with: routeflow pki init CONFIG)") from None
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def server_context(key_dir: Path, identity: str = SERVER) -> ssl.SSLContext:
    """The side that accepts: ``identity``'s certificate, and one from every peer, signed by our CA."""
    return _context(ssl.PROTOCOL_TLS_SERVER, key_dir, identity)


def peer_context(key_dir: Path, identity: str) -> ssl.SSLContext:
    """A peer's side: ``identity``'s certificate; the server's must be signed by our CA."""
    ctx = _context(ssl.PROTOCOL_TLS_CLIENT, key_dir, identity)
    # The server is recognised by the name in its certificate (checked by
    # check_server), not a host name: peers reach it by address.
    ctx.check_hostname = False
    return ctx


def certified_identity(peercert: dict | None) -> str | None:
    """The common name of a verified peer certificate (``SSLSocket.getpeercert()``)."""
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def check_server(peercert: dict | None) -> None:
    """Raise PkiError unless the certificate is our server's."""
    who = certified_identity(peercert)
    if who != SERVER:
        raise PkiError(f"the peer's certificate names {who!r}, not {SERVER!r}: it is not our RF-Server")


def expiry(cert: Path) -> datetime.datetime:
    """When the certificate in ``cert`` expires."""
    from cryptography import x509

    return x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc
