"""az:// against a real Azurite (the npm `azurite` package) on 127.0.0.1, started for this module.

The released streamer's C++ Azure client only builds `https://<account>.<AZURE_STORAGE_ENDPOINT_SUFFIX>`,
so Azurite serves HTTPS with a certificate made here, under its production-style name
`devstoreaccount1.blob.localhost:<port>`. The client's curl resolves `*.localhost` to 127.0.0.1 itself
and trusts only its compiled-in bundle, /etc/ssl/certs/ca-certificates.crt (SSL_CERT_FILE and
CURL_CA_BUNDLE are ignored). So each nemoverify run goes in a private mount namespace (`unshare -m`)
where the test's CA is bind-mounted over that bundle and a hosts file naming the account host is
bind-mounted over /etc/hosts (for Python's resolver); nothing outside that process changes. The
Python side trusts the CA through REQUESTS_CA_BUNDLE. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from malformed import SHARD2, flip_byte

ACCOUNT = "devstoreaccount1"
# Azurite's well-known development account key (published in Azurite's README; not a secret).
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
STREAMER_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # compiled into libstreamerazure.so (0.17.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _azurite_program() -> str | None:
    """NEMOVERIFY_AZURITE, azurite-blob on PATH, or the copy .ci/run installs next to the venv."""
    for candidate in (
        os.environ.get("NEMOVERIFY_AZURITE"),
        shutil.which("azurite-blob"),
        os.path.join(sys.prefix, "azurite", "node_modules", ".bin", "azurite-blob"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _certificate(directory: str) -> tuple[str, str, str]:
    """A throwaway CA and a server certificate for the account host, 127.0.0.1 and localhost.
    Returns (ca.pem, server.pem, server.key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nemoverify test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )  # digital signature, cert sign, CRL sign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    host = f"{ACCOUNT}.blob.localhost"
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host), x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = tuple(os.path.join(directory, n) for n in ("ca.pem", "server.pem", "server.key"))
    with open(paths[0], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as f:
        f.write(server.public_bytes(serialization.Encoding.PEM))
    with open(paths[2], "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return paths  # type: ignore[return-value]


# The nemoverify process sees the test CA as the system bundle and the account host in /etc/hosts.
NAMESPACE_SCRIPT = 'mount --bind "$1" "$3" && mount --bind "$2" /etc/hosts && shift 3 && exec "$@"'


@dataclass
class Azurite:
    proc: subprocess.Popen[bytes]
    port: int
    ca: str
    hosts: str
    sas: str

    @property
    def suffix(self) -> str:
        return f"blob.localhost:{self.port}"

    def service(self):  # type: ignore[no-untyped-def]
        """The fixture's own client: path-style on 127.0.0.1 with the account key, for uploads."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(
            f"https://127.0.0.1:{self.port}/{ACCOUNT}",
            credential={"account_name": ACCOUNT, "account_key": DEV_KEY},
            connection_verify=self.ca,
        )

    def upload(self, src: str, container: str, prefix: str) -> str:
        from azure.core.exceptions import ResourceExistsError

        service = self.service()
        with contextlib.suppress(ResourceExistsError):
            service.create_container(container)
        for name in os.listdir(src):
            with open(os.path.join(src, name), "rb") as f:
                service.get_blob_client(container, f"{prefix}/{name}").upload_blob(f, overwrite=True)
        return f"az://{container}/{prefix}"

    def env(self, **overrides: str | None) -> dict[str, str]:
        """The environment a user would set: account, endpoint suffix, SAS token; no other Azure
        setting inherited (so nothing can reach for a real Azure host or credential)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
        env |= {
            "AZURE_STORAGE_ACCOUNT_NAME": ACCOUNT,
            "AZURE_STORAGE_ENDPOINT_SUFFIX": self.suffix,
            "AZURE_STORAGE_SAS_TOKEN": self.sas,
            "REQUESTS_CA_BUNDLE": self.ca,
        }
        for k, v in overrides.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def nemoverify(
        self, *args: str, trust_streamer: bool = True, **env: str | None
    ) -> subprocess.CompletedProcess[str]:
        """A CLI run in its own process and mount namespace. trust_streamer=False leaves the
        streamer's bundle alone (the test CA goes over a scratch file instead)."""
        bundle_target = STREAMER_CA_BUNDLE if trust_streamer else self.hosts + ".unused"
        if not trust_streamer:
            open(bundle_target, "w").close()
        argv = ["unshare", "-m", "sh", "-c", NAMESPACE_SCRIPT, "sh", self.ca, self.hosts, bundle_target]
        return subprocess.run(
            [*argv, sys.executable, "-m", "nemoverify", *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=120,
        )


def _namespace_works(ca: str, hosts: str) -> str | None:
    """None if a private mount namespace with both bind mounts can be made here, else why not."""
    if not shutil.which("unshare"):
        return "no unshare(1)"
    if not os.path.isfile(STREAMER_CA_BUNDLE):
        return f"{STREAMER_CA_BUNDLE} (the streamer's compiled-in CA bundle) does not exist to be overlaid"
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", NAMESPACE_SCRIPT, "sh", ca, hosts, STREAMER_CA_BUNDLE, "cat", "/etc/hosts"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0 or f"{ACCOUNT}.blob.localhost" not in probe.stdout:
        return f"cannot make a private mount namespace (needs root / CAP_SYS_ADMIN): {probe.stderr.strip()[:200]}"
    return None


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    pytest.importorskip("azure.storage.blob", reason="the azure extra is not installed")
    pytest.importorskip("runai_model_streamer_azure", reason="the azure extra is not installed")
    program = _azurite_program()
    if program is None:
        pytest.skip("azurite-blob not found (npm install azurite; .ci/run does), nor NEMOVERIFY_AZURITE")
    work = str(tmp_path_factory.mktemp("azurite"))
    ca, cert, key = _certificate(work)
    hosts = os.path.join(work, "hosts")
    with open("/etc/hosts") as real, open(hosts, "w") as f:
        f.write(real.read().rstrip("\n") + f"\n127.0.0.1 {ACCOUNT}.blob.localhost\n")
    why = _namespace_works(ca, hosts)
    if why:
        pytest.skip(f"az:// tests need the test CA over the streamer's bundle for one process: {why}")
    port = _free_port()
    data = os.path.join(work, "data")
    os.mkdir(data)
    proc = subprocess.Popen(
        [program, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--cert", cert, "--key", key]
        + ["--location", data, "--disableTelemetry", "--silent", "--skipApiVersionCheck"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("azurite did not start") from None
                time.sleep(0.1)
        from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

        sas = generate_account_sas(
            ACCOUNT,
            DEV_KEY,
            ResourceTypes(service=True, container=True, object=True),
            AccountSasPermissions(read=True, list=True),
            expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2),
        )
        yield Azurite(proc, port, ca, hosts, sas)
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _signature(sas: str) -> str:
    return next(p for p in sas.split("&") if p.startswith("sig="))[len("sig=") :]


def test_an_azure_checkpoint_verifies_streamed_from_the_container(azurite: Azurite, omni_checkpoint: str) -> None:
    url = azurite.upload(omni_checkpoint, "models", "omni")
    result = azurite.nemoverify("check", url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VERIFIED" in result.stdout and "runai-model-streamer" in result.stdout
    assert _signature(azurite.sas) not in result.stdout + result.stderr
    assert azurite.nemoverify("check", omni_checkpoint, "--against", url).returncode == 0
    result = azurite.nemoverify("inspect", url, "--format", "json")
    assert result.returncode == 0, result.stderr
    inv = json.loads(result.stdout)
    assert inv["components"]["sound"]["tensors"] > 0 and inv["indexed"]


def test_legacy_with_reuse_fails_when_streamed_from_the_container(azurite: Azurite, vl_checkpoint: str) -> None:
    url = azurite.upload(vl_checkpoint, "models", "vl")
    result = azurite.nemoverify("check", url, "--vllm", "0.20", "--stress", "-q")
    assert result.returncode == 1, result.stdout + result.stderr


def test_a_corrupted_or_truncated_azure_blob_is_caught(
    cli, azurite: Azurite, omni_checkpoint: str, copy_of, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    manifest = tmp_path / "m.json"
    assert cli("manifest", omni_checkpoint, "-o", str(manifest), "-q").exit_code == 0
    good = azurite.upload(omni_checkpoint, "models", "manifested")
    assert azurite.nemoverify("verify", good, "--manifest", str(manifest)).returncode == 0

    flipped = copy_of(omni_checkpoint)
    name = flip_byte(flipped, mask=0x40)
    url = azurite.upload(flipped, "models", "flipped")
    out = tmp_path / "r.json"
    result = azurite.nemoverify("verify", url, "--manifest", str(manifest), "--json", str(out), "-q")
    assert result.returncode == 1, result.stderr
    assert {m["name"] for m in json.loads(out.read_text())["mismatches"]} == {name}
    result = azurite.nemoverify("check", omni_checkpoint, "--against", url, "--json", str(out), "-q")
    assert result.returncode == 1, result.stderr
    assert {m["name"] for m in json.loads(out.read_text())["mismatches"]} == {name}

    os.truncate(os.path.join(flipped, SHARD2), os.path.getsize(os.path.join(flipped, SHARD2)) - 3)
    url = azurite.upload(flipped, "models", "truncated")
    result = azurite.nemoverify("check", url)
    assert result.returncode == 3
    assert "[file-truncated]" in result.stderr and f"{url}/{SHARD2}" in result.stderr


def test_the_account_key_authenticates_both_passes(azurite: Azurite, vl_checkpoint: str) -> None:
    url = azurite.upload(vl_checkpoint, "models", "keyed")
    result = azurite.nemoverify("check", url, AZURE_STORAGE_SAS_TOKEN=None, AZURE_STORAGE_ACCOUNT_KEY=DEV_KEY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert DEV_KEY not in result.stdout + result.stderr


def test_a_streamer_that_cannot_reach_the_blobs_is_exit_3_not_verified(azurite: Azurite, vl_checkpoint: str) -> None:
    """The reference pass trusts the test CA, the streamer's client does not: the candidate fails
    its TLS handshake, and the run must say so rather than verify the reference against itself."""
    url = azurite.upload(vl_checkpoint, "models", "untrusted")
    result = azurite.nemoverify("check", url, trust_streamer=False)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "the Run:ai streamer failed" in " ".join(result.stderr.split())
    assert "VERIFIED" not in result.stdout + result.stderr


def test_azure_errors_are_exit_3_and_never_print_credentials(azurite: Azurite, vl_checkpoint: str) -> None:
    url = azurite.upload(vl_checkpoint, "models", "errors")
    sig = _signature(azurite.sas)
    result = azurite.nemoverify("check", "az://no-such-container/model")
    assert result.returncode == 3 and "no such container 'no-such-container'" in result.stderr

    forged = azurite.sas.replace(f"sig={sig}", "sig=" + ("A" if sig[0] != "A" else "B") + sig[1:])
    result = azurite.nemoverify("check", url, AZURE_STORAGE_SAS_TOKEN=forged)
    assert result.returncode == 3 and "access denied" in result.stderr, result.stderr
    assert forged.split("sig=")[1] not in result.stdout + result.stderr

    started = time.monotonic()
    result = azurite.nemoverify("check", url, AZURE_STORAGE_ENDPOINT_SUFFIX=f"blob.localhost:{_free_port()}")
    assert result.returncode == 3 and "Connection refused" in result.stderr, result.stderr
    assert sig not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 60


def test_az_without_an_account_name_is_exit_3(cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("azure.storage.blob", reason="the azure extra is not installed")
    for k in [k for k in os.environ if k.startswith("AZURE_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", f"AccountName={ACCOUNT};AccountKey={DEV_KEY}")
    result = cli("check", "az://container/model")
    assert result.exit_code == 3
    assert "needs AZURE_STORAGE_ACCOUNT_NAME" in " ".join(result.stderr.split())
    assert DEV_KEY not in result.output


def test_redact_hides_a_sas_signature_in_any_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from nemoverify.redaction import redact

    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", "?sv=2025-01-05&ss=b&sig=c2lnbmF0dXJl%2Bx%3D")
    # The SDK may put the parameters back in another order: the signature still goes.
    text = redact("GET https://a.blob.localhost/c/b?sig=c2lnbmF0dXJl%2Bx%3D&sv=2025-01-05 failed; sig=other%3D")
    assert "c2lnbmF0dXJl" not in text and "other" not in text and "sig=***" in text
    assert redact("sv=2025-01-05&ss=b&sig=c2lnbmF0dXJl%2Bx%3D") == "***"
    assert "k3y" not in redact("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k3y==;EndpointSuffix=x")
