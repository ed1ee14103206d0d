"""Master keys kept in AWS KMS (or a server speaking its API): data keys wrapped by KMS Encrypt.

A tenant data key is sent to KMS ``Encrypt`` under the active KMS key with the encryption
context ``{"liquid-dek": "<tenant>/<version>"}`` and stored as the returned ciphertext blob;
reading it back is ``Decrypt`` with the same key and context, so a blob copied to another tenant
or version, or presented with another key, is refused by KMS itself. The master key never
leaves KMS; Liquid keeps only the unwrapped data keys in memory (``liquid.keyring.DataKeys``).

Credentials come from boto3's default chain (environment, shared files, IAM roles, web identity
/ IRSA), never from Liquid's settings. In the catalog a KMS master key's id is ``kms:`` and the
key as configured (a key id, an ARN, or ``alias/NAME``), so it never collides with a file key id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from liquid.errors import ConfigError, KeyUnavailable, MissingDependency
from liquid.keyring import WrongKey

PREFIX = "kms:"
#: KMS errors that mean "this key and context do not open this blob" (not "KMS is unreachable").
_WRONG = {"InvalidCiphertextException", "IncorrectKeyException", "AccessDeniedException", "NotFoundException"}


class KmsKeyring:
    """KMS keys by id, the first active (see the module docstring).

    Args:
        keys: KMS key ids, ARNs or ``alias/NAME``, the active one first.
        endpoint: a KMS-API endpoint other than AWS's own.
        region: the KMS region (else boto3's: ``AWS_REGION`` and the config files).
        client: a boto3 KMS client to use instead of making one (tests, custom sessions).
    """

    def __init__(
        self,
        keys: Sequence[str],
        *,
        endpoint: str | None = None,
        region: str | None = None,
        client: Any = None,
    ) -> None:
        if not keys:
            raise ConfigError("encryption.kms_keys is empty: name at least one KMS key", field="encryption")
        for key in keys:
            if not key or key != key.strip():
                raise ConfigError(
                    f"KMS key {key!r} in encryption.kms_keys is blank or padded", field="encryption"
                )
        self.keys = [PREFIX + k for k in keys]
        self.active_id = self.keys[0]
        self.endpoint = endpoint
        if client is None:
            try:
                import boto3
            except ImportError as exc:
                raise MissingDependency("boto3 is not installed: pip install 'liquid-data[s3]'") from exc
            client = boto3.client("kms", endpoint_url=endpoint, region_name=region)
        self.client = client

    def __repr__(self) -> str:
        where = f", endpoint={self.endpoint!r}" if self.endpoint else ""
        return f"KmsKeyring(active={self.active_id!r}, ids={self.keys}{where})"

    def __contains__(self, key_id: object) -> bool:
        return key_id in self.keys

    def wrap(self, key_id: str, key: bytes, context: bytes) -> bytes:
        got = self._call(
            "Encrypt",
            key_id,
            KeyId=key_id.removeprefix(PREFIX),
            Plaintext=key,
            EncryptionContext=_ctx(context),
        )
        blob: bytes = got["CiphertextBlob"]
        return blob

    def unwrap(self, key_id: str, wrapped: bytes, context: bytes) -> bytes:
        got = self._call(
            "Decrypt",
            key_id,
            KeyId=key_id.removeprefix(PREFIX),
            CiphertextBlob=wrapped,
            EncryptionContext=_ctx(context),
        )
        plain: bytes = got["Plaintext"]
        return plain

    def _call(self, op: str, key_id: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, "encrypt" if op == "Encrypt" else "decrypt")(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if op == "Decrypt" and code in _WRONG:
                raise WrongKey(f"KMS refused to decrypt it with {key_id!r} ({code})") from None
            raise KeyUnavailable(
                f"KMS {op} with {key_id!r} failed: {code or exc}; check the key exists, is enabled and "
                "that this process's AWS credentials may use it",
                field="encryption",
            ) from None
        except BotoCoreError as exc:
            raise KeyUnavailable(
                f"KMS {op} with {key_id!r} could not reach KMS ({type(exc).__name__}: {exc}); "
                "check encryption.kms_endpoint / kms_region and the network",
                field="encryption",
            ) from None


def _ctx(context: bytes) -> dict[str, str]:
    return {"liquid-dek": context.decode().removeprefix("liquid-dek/")}


__all__ = ["PREFIX", "KmsKeyring"]
