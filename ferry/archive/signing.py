"""Signatures of archives: Ed25519 over the sidecar (manifest + the stored archive's size and sha256).

The sidecar binds everything: the manifest lists every member's sha256, and the sidecar adds the
size and sha256 of the stored bytes (and of the plaintext, when encrypted). A snapshot host signs
it with its private key; a restoring host holds only public keys, a keyring of trusted sources,
and refuses archives that are unsigned, signed by a key not in its keyring, or whose signature does
not verify — unless the operator passes ``--allow-unsigned`` (flow parameter ``allow_unsigned``).

Formats (all standard, so ``ssh-keygen -lf`` shows the same fingerprints):

- private key: PEM PKCS#8 (``-----BEGIN PRIVATE KEY-----``, what ``ferry keygen`` writes) or an
  unencrypted OpenSSH Ed25519 key (``ssh-keygen -t ed25519 -N ''``);
- public key: one OpenSSH line, ``ssh-ed25519 <base64> <name>``; a keyring file holds one per line
  (``#`` comments and blank lines allowed), a keyring directory holds files of such lines or PEM
  public keys (``-----BEGIN PUBLIC KEY-----``, named after the file);
- key id: the OpenSSH fingerprint, ``SHA256:<base64 of the sha256 of the key blob>``;
- the sidecar's ``signature`` field: ``ed25519 <key id> <base64 signature>``, over a fixed prefix
  and the canonical JSON of the sidecar without its signature.

An HMAC signature (``hmac-sha256:...``, written by ferry before Ed25519) is no longer checked: such
an archive counts as unsigned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field, replace

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ferry.archive.manifest import Sidecar
from ferry.errors import IntegrityError, UnsafeArchiveError, UsageError

SCHEME = "ed25519"
#: Signed before the sidecar, so a signature over anything else ferry might sign one day cannot pass for one.
DOMAIN = b"ferry-sidecar-signature-v1\n"
LEGACY_HMAC_PREFIX = "hmac-sha256:"
#: How the refusals tell the operator what to do.
TRUST_HINT = (
    "add the public key of the host that wrote it to this host's keyring (FERRY_TRUSTED_KEYS, default "
    "/etc/ferry/trusted-keys; `ferry keygen` on that host prints the line to add), or pass --allow-unsigned "
    "(flow parameter allow_unsigned) if you accept the risk of restoring an archive anyone with write "
    "access to the store could have written"
)
MAX_NAME = 100
_SIGNATURE_RE = re.compile(r"ed25519 (SHA256:[A-Za-z0-9+/]{43}) ([A-Za-z0-9+/]{86}==)")


@dataclass(frozen=True)
class PublicKey:
    name: str
    key: Ed25519PublicKey = field(repr=False, compare=False)
    fingerprint: str = ""

    @classmethod
    def of(cls, key: Ed25519PublicKey, name: str) -> PublicKey:
        return cls(name, key, fingerprint(key))

    def line(self) -> str:
        """The OpenSSH line for a keyring: ``ssh-ed25519 <base64> <name>``."""
        return f"{openssh_public(self.key)} {self.name}"


@dataclass(frozen=True)
class Keyring:
    """The public keys this host trusts, by key id."""

    keys: dict[str, PublicKey] = field(default_factory=dict)

    def with_key(self, key: PublicKey) -> Keyring:
        """This keyring and ``key``; a key already in it keeps its first name."""
        keys = dict(self.keys)
        keys.setdefault(key.fingerprint, key)
        return Keyring(keys)


@dataclass(frozen=True)
class Verdict:
    """What the signature check found: who signed, or why an unsigned archive was let through."""

    trusted: bool
    detail: str


def openssh_public(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def fingerprint(key: Ed25519PublicKey) -> str:
    """The OpenSSH fingerprint of the key (what ``ssh-keygen -lf`` prints)."""
    blob = base64.b64decode(openssh_public(key).split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _canonical(sidecar: Sidecar) -> bytes:
    body = replace(sidecar, signature="").as_dict()
    del body["signature"]
    return DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(sidecar: Sidecar, key: Ed25519PrivateKey) -> Sidecar:
    signature = base64.b64encode(key.sign(_canonical(sidecar))).decode()
    return replace(sidecar, signature=f"{SCHEME} {fingerprint(key.public_key())} {signature}")


def check(sidecar: Sidecar | None, keyring: Keyring, allow_unsigned: bool = False) -> Verdict:
    """Refuse an archive not signed by a key of ``keyring``, unless ``allow_unsigned``.

    A signature that names a trusted key but does not verify is refused even with
    ``allow_unsigned``: no honest writer produces one, it means the sidecar was altered."""
    text = sidecar.signature.strip() if sidecar is not None else ""
    if sidecar is None or not text or text.startswith(LEGACY_HMAC_PREFIX):
        return _unsigned(sidecar, text, allow_unsigned)
    match = _SIGNATURE_RE.fullmatch(text)
    if match is None:
        raise IntegrityError(
            "The archive's signature is malformed (expected 'ed25519 SHA256:<key id> <signature>'): "
            "it was altered, or not written by ferry."
        )
    key_id, signature = match.groups()
    trusted = keyring.keys.get(key_id)
    if trusted is None:
        if allow_unsigned:
            return Verdict(
                False,
                f"signed by key {key_id}, which is NOT in this host's keyring; accepted because of --allow-unsigned",
            )
        raise UnsafeArchiveError(
            f"The archive is signed by key {key_id}, which is not in this host's keyring "
            f"({_where(keyring)}). If that key is one of your snapshot hosts', " + TRUST_HINT + "."
        )
    try:
        trusted.key.verify(base64.b64decode(signature), _canonical(sidecar))
    except (InvalidSignature, binascii.Error) as exc:
        raise IntegrityError(
            f"The archive's signature by {trusted.name} ({key_id}) does not verify: the sidecar (its manifest, "
            "size or sha256) was altered after it was signed. Do not restore it; take a new snapshot."
        ) from exc
    return Verdict(True, f"signed by {trusted.name} ({key_id}), a trusted key")


def _unsigned(sidecar: Sidecar | None, text: str, allow_unsigned: bool) -> Verdict:
    why = _unsigned_why(sidecar, text)
    if allow_unsigned:
        return Verdict(False, f"UNSIGNED ({why}); accepted because of --allow-unsigned")
    if sidecar is None:
        raise UnsafeArchiveError(
            f"The archive is not signed: {why}. If it is an archive Podman exported and you trust it, "
            "restore it with --allow-unverified --allow-unsigned; otherwise " + TRUST_HINT + "."
        )
    raise UnsafeArchiveError(f"The archive is not signed: {why}. Restores refuse unsigned archives: {TRUST_HINT}.")


def _unsigned_why(sidecar: Sidecar | None, text: str) -> str:
    if sidecar is None:
        return "there is no ferry sidecar next to it, so nothing about it is signed"
    if text:
        return "it carries an HMAC signature from an older ferry, which is no longer checked"
    return "its snapshot host had no signing key (FERRY_SIGNING_KEY)"


def _where(keyring: Keyring) -> str:
    if not keyring.keys:
        return "the keyring is empty"
    names = ", ".join(sorted(k.name for k in keyring.keys.values()))
    return f"which holds {len(keyring.keys)} key(s): {names}"


# -- key files ----------------------------------------------------------------------------------


def private_key_from(data: bytes, where: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM PKCS#8 or OpenSSH text. Errors never quote the text."""
    fix = "create one with `ferry keygen`"
    try:
        key: object = (
            serialization.load_ssh_private_key(data, password=None)
            if b"BEGIN OPENSSH PRIVATE KEY" in data
            else serialization.load_pem_private_key(data, password=None)
        )
    except TypeError as exc:  # a passphrase-protected key
        raise UsageError(
            f"{where} is encrypted with a passphrase; ferry needs an unencrypted key file (mode 0600): {fix}."
        ) from exc
    except (ValueError, UnsupportedAlgorithm):
        raise UsageError(
            f"{where} is not a private key ferry can read (PEM '-----BEGIN PRIVATE KEY-----' or an OpenSSH "
            f"Ed25519 key): {fix}."
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{where} holds a {type(key).__name__.removeprefix('_')}, not an Ed25519 key: {fix}.")
    return key


def public_keys_from(data: bytes, where: str, default_name: str) -> list[PublicKey]:
    """The keys of one keyring file: a PEM public key, or OpenSSH lines. Errors never quote the text."""
    if b"PRIVATE KEY" in data:
        raise UsageError(
            f"{where} holds a private key. A keyring holds only public keys (the .pub file `ferry keygen` "
            "writes); move the private key out of it."
        )
    if data.lstrip().startswith(b"-----BEGIN PUBLIC KEY-----"):
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm):
            raise UsageError(f"{where} is not a PEM public key ferry can read.") from None
        if not isinstance(key, Ed25519PublicKey):
            raise UsageError(f"{where} holds a key that is not Ed25519; ferry signs only with Ed25519.")
        return [PublicKey.of(key, _name(default_name, where))]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{where} is not text: expected lines 'ssh-ed25519 <base64 key> <name>'.") from None
    keys = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            keys.append(_public_line(line, f"{where} line {number}", default_name))
    return keys


def _public_line(line: str, where: str, default_name: str) -> PublicKey:
    parts = line.split(None, 2)
    if len(parts) < 2 or parts[0] != "ssh-ed25519":
        kind = parts[0] if parts and re.fullmatch(r"[a-z0-9@.-]{1,40}", parts[0]) else "this"
        raise UsageError(
            f"{where} is not an Ed25519 public key: expected 'ssh-ed25519 <base64 key> <name>' "
            f"(got a {kind!s} line); `ferry keygen` prints the line to add."
        )
    try:
        key = serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
    except (ValueError, UnsupportedAlgorithm):
        raise UsageError(f"{where}: the key's base64 does not decode to an Ed25519 public key.") from None
    if not isinstance(key, Ed25519PublicKey):  # pragma: no cover - the prefix says ssh-ed25519
        raise UsageError(f"{where} is not an Ed25519 public key.")
    return PublicKey.of(key, _name(parts[2] if len(parts) > 2 else default_name, where))


def _name(name: str, where: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise UsageError(f"{where}: the key's name must be printable text of 1 to {MAX_NAME} characters.")
    return name
