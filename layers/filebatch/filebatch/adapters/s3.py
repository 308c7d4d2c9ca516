"""ObjectStorage on one S3 bucket."""

from __future__ import annotations

import json
import tempfile
from collections import deque
from collections.abc import Generator, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from filebatch.errors import ConflictError, InvalidRequestError, NotFoundError, StorageUnavailableError
from filebatch.models.domain import sha256_base64
from filebatch.services.ports import ObjectHead, StoredObject, StoredPart

# What a streamed read holds in memory at a time.
STREAM_CHUNK_BYTES = 1024 * 1024
# A large object is read as ranged GETs, several at a time and handed on in order: one S3 connection
# gives tens of MB/s, so a multi-GB file read by one GET would not be hashed within the process
# step's Timeout (docs/scaling.md, largest file). The first range comes from the GET that opened the
# object, so a reader that stops early (the describe step reading the first words of a text) starts
# no other request. Memory: at most PARALLEL_RANGES ranges downloaded ahead, plus the one being read.
RANGE_BYTES = 16 * 1024 * 1024
PARALLEL_RANGES = 8

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}
# S3's refusals of a CompleteMultipartUpload (S3 API reference, CompleteMultipartUpload "Errors"),
# as the codes the API answers with (400).
_PART_ERRORS = {
    "InvalidPart": "invalid_part",
    "InvalidPartOrder": "invalid_part_order",
    "EntityTooSmall": "part_too_small",
}
# ListParts returns at most 1,000 parts per page.
LIST_PARTS_PAGE = 1000
# DeleteObjects takes at most 1,000 keys; ListObjectVersions returns at most 1,000 per page.
DELETE_BATCH = 1000


class S3ObjectStorage:
    def __init__(self, bucket: str, client: Any) -> None:
        self._bucket = bucket
        self._client = client

    def presign_put(
        self, key: str, *, content_type: str, size: int, expires_in: int, sha256: str | None = None
    ) -> tuple[str, dict[str, str]]:
        # Content-Type and Content-Length are signed: S3 refuses a PUT whose headers differ.
        # The process step still re-checks size and type, since not every S3 emulation enforces it.
        # If-None-Match: * is signed too: S3 refuses (412) a PUT to a key that already holds an
        # object, so the same URL cannot replace bytes once they are uploaded (and maybe verified).
        params: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": key,
            "ContentType": content_type,
            "ContentLength": size,
            "IfNoneMatch": "*",
        }
        headers = {"Content-Type": content_type, "If-None-Match": "*"}
        _sign_checksum(params, headers, sha256)
        url = self._client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires_in, HttpMethod="PUT"
        )
        return url, headers

    def presign_post(
        self, key: str, *, content_type: str, size: int, expires_in: int, sha256: str | None = None
    ) -> tuple[str, dict[str, str]]:
        # A browser form (or fetch with FormData) sends these fields, then the file, as
        # multipart/form-data: no custom header, so no CORS preflight. The signed policy pins what
        # a PUT URL signs as headers: the key (botocore adds it), the Content-Type field, the size
        # (content-length-range of exactly the declared size) and, when declared, the SHA-256
        # (the x-amz-checksum-sha256 field: botocore signs it as any field, whether S3 checks it is
        # S3's POST Object's to say; the process step checks it again either way). A POST cannot
        # carry If-None-Match: a second POST within the URL's lifetime writes a new version, and
        # the workflow reads the version the first upload event announced (docs/uploads.md).
        fields = {"Content-Type": content_type}
        conditions: list[Any] = [{"Content-Type": content_type}, ["content-length-range", size, size]]
        if sha256 is not None:
            checksum = sha256_base64(sha256)
            fields["x-amz-checksum-sha256"] = checksum
            conditions.append({"x-amz-checksum-sha256": checksum})
        post = self._client.generate_presigned_post(
            self._bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=expires_in
        )
        return str(post["url"]), {str(name): str(value) for name, value in post["fields"].items()}

    def put_json(self, key: str, document: Any) -> None:
        try:
            self._client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=json.dumps(document, separators=(",", ":")).encode(),
                ContentType="application/json",
            )
        except ClientError as error:
            raise StorageUnavailableError(f"S3 put {key} failed: {_code(error)}") from error

    def stream(self, key: str, *, version_id: str | None = None) -> StoredObject:
        request = {"Bucket": self._bucket, "Key": key}
        if version_id is not None:
            request["VersionId"] = version_id
        try:
            response = self._client.get_object(**request)
        except ClientError as error:
            if _code(error) in _MISSING:
                raise NotFoundError(f"object {key} does not exist", code="object_missing") from error
            raise StorageUnavailableError(f"S3 get {key} failed: {_code(error)}") from error
        size = int(response["ContentLength"])
        # The ranges read the very bytes the first GET opened: its version, or (unversioned) its ETag.
        pinned = (
            {"VersionId": response["VersionId"]}
            if response.get("VersionId")
            else {"IfMatch": response["ETag"]}
        )
        return StoredObject(
            size, response.get("VersionId"), self._chunks(key, response["Body"], size=size, pinned=pinned)
        )

    def _chunks(
        self, key: str, body: Any, *, size: int, pinned: dict[str, str]
    ) -> Generator[bytes, None, None]:
        read = 0
        try:
            # The first range (the whole of a small object) from the open GET, in bounded chunks.
            for chunk in body.iter_chunks(STREAM_CHUNK_BYTES):
                yield chunk
                read += len(chunk)
                if read >= RANGE_BYTES and read < size:
                    break
        except (BotoCoreError, OSError) as error:
            raise StorageUnavailableError(f"S3 read of {key} broke off: {error}") from error
        finally:
            body.close()
        if read < size:
            yield from self._ranges(key, start=read, size=size, pinned=pinned)

    def _ranges(
        self, key: str, *, start: int, size: int, pinned: dict[str, str]
    ) -> Generator[bytes, None, None]:
        starts = iter(range(start, size, RANGE_BYTES))
        pool = ThreadPoolExecutor(PARALLEL_RANGES, thread_name_prefix="s3-range")
        ahead: deque[Future[bytes]] = deque()

        def fetch_next() -> None:
            first = next(starts, None)
            if first is not None:
                last = min(first + RANGE_BYTES, size) - 1
                ahead.append(pool.submit(self._range, key, first, last, pinned))

        try:
            for _ in range(PARALLEL_RANGES):
                fetch_next()
            while ahead:
                data = ahead.popleft().result()
                fetch_next()
                view = memoryview(data)
                for offset in range(0, len(data), STREAM_CHUNK_BYTES):
                    yield bytes(view[offset : offset + STREAM_CHUNK_BYTES])
        finally:
            # A reader that stops early (or a failed range) leaves nothing downloading behind it.
            pool.shutdown(wait=False, cancel_futures=True)

    def _range(self, key: str, first: int, last: int, pinned: dict[str, str]) -> bytes:
        try:
            response = self._client.get_object(
                Bucket=self._bucket, Key=key, Range=f"bytes={first}-{last}", **pinned
            )
            data: bytes = response["Body"].read()
        except ClientError as error:
            raise StorageUnavailableError(f"S3 ranged get of {key} failed: {_code(error)}") from error
        except (BotoCoreError, OSError) as error:
            raise StorageUnavailableError(f"S3 read of {key} broke off: {error}") from error
        if len(data) != last - first + 1:
            raise StorageUnavailableError(f"S3 gave {len(data)} bytes of {key} for the range {first}-{last}")
        return data

    # -- stream PURGE -----------------------------------------------------------------------------
    def put_stream(self, key: str, chunks: Iterable[bytes], *, content_type: str) -> int:
        # S3 needs the length before the body: the chunks go to local disk first (memory stays at a
        # chunk), then one PUT streams the file (up to 5 GB; an export is tens of MB at 10,000 results).
        with tempfile.TemporaryFile() as spool:
            for chunk in chunks:
                spool.write(chunk)
            size = spool.tell()
            spool.seek(0)
            try:
                self._client.put_object(Bucket=self._bucket, Key=key, Body=spool, ContentType=content_type)
            except ClientError as error:
                raise StorageUnavailableError(f"S3 put {key} failed: {_code(error)}") from error
        return size

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if _code(error) in _MISSING:
                return False
            raise StorageUnavailableError(f"S3 head {key} failed: {_code(error)}") from error
        return True

    def presign_get(self, key: str, *, expires_in: int) -> str:
        return str(
            self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=expires_in
            )
        )

    # -- issue 10, stream MULTIPART ------------------------------------------------------------
    def head(self, key: str) -> ObjectHead | None:
        try:
            response = self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if _code(error) in _MISSING:
                return None
            raise StorageUnavailableError(f"S3 head {key} failed: {_code(error)}") from error
        return ObjectHead(int(response["ContentLength"]), str(response["ETag"]).strip('"'))

    def create_multipart_upload(self, key: str, *, content_type: str, part_checksums: bool = False) -> str:
        request: dict[str, Any] = {"Bucket": self._bucket, "Key": key, "ContentType": content_type}
        if part_checksums:
            # Every part then carries its SHA-256, which S3 checks on UploadPart. SHA-256 is
            # COMPOSITE (a checksum of the parts' checksums): S3 offers FULL_OBJECT only for CRC
            # algorithms, so the whole file's digest stays the process step's check.
            request.update(ChecksumAlgorithm="SHA256", ChecksumType="COMPOSITE")
        try:
            response = self._client.create_multipart_upload(**request)
        except ClientError as error:
            raise StorageUnavailableError(
                f"S3 create multipart upload of {key} failed: {_code(error)}"
            ) from error
        return str(response["UploadId"])

    def presign_upload_part(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        *,
        size: int,
        expires_in: int,
        sha256: str | None = None,
    ) -> tuple[str, dict[str, str]]:
        # Content-Length is signed: S3 refuses a part of any other size, so every part but the last is
        # exactly the part size the instruction names. A part's SHA-256 is signed as a PUT's is.
        params: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": key,
            "UploadId": upload_id,
            "PartNumber": part_number,
            "ContentLength": size,
        }
        headers: dict[str, str] = {}
        _sign_checksum(params, headers, sha256)
        url = self._client.generate_presigned_url(
            "upload_part", Params=params, ExpiresIn=expires_in, HttpMethod="PUT"
        )
        return url, headers

    def list_parts(
        self, key: str, upload_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[StoredPart]:
        parts: list[StoredPart] = []
        marker = after
        while limit is None or len(parts) < limit:
            page_size = LIST_PARTS_PAGE if limit is None else min(LIST_PARTS_PAGE, limit - len(parts))
            try:
                page = self._client.list_parts(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumberMarker=marker,
                    MaxParts=page_size,
                )
            except ClientError as error:
                if _code(error) == "NoSuchUpload":
                    raise NotFoundError(f"no upload {upload_id} of {key}", code="upload_not_found") from error
                raise StorageUnavailableError(f"S3 list parts of {key} failed: {_code(error)}") from error
            parts.extend(
                StoredPart(
                    int(p["PartNumber"]), str(p["ETag"]).strip('"'), int(p["Size"]), p.get("ChecksumSHA256")
                )
                for p in page.get("Parts", [])
            )
            if not page.get("IsTruncated"):
                break
            marker = int(page["NextPartNumberMarker"])
        return parts

    def complete_multipart_upload(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str, str | None]]
    ) -> str:
        listed = []
        for number, etag, checksum in parts:
            part: dict[str, Any] = {"PartNumber": number, "ETag": f'"{etag.strip().strip(chr(34))}"'}
            if checksum:
                part["ChecksumSHA256"] = checksum
            listed.append(part)
        try:
            # If-None-Match as for a PUT: the bucket policy refuses object creations without it, and
            # a key that already holds the file's bytes is not replaced.
            response = self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": listed},
                IfNoneMatch="*",
            )
        except ClientError as error:
            code = _code(error)
            if code == "PreconditionFailed":
                raise ConflictError(f"{key} already holds an object", code="already_uploaded") from error
            if code in _PART_ERRORS:
                message = error.response.get("Error", {}).get("Message", code)
                raise InvalidRequestError(
                    f"S3 refused the parts: {message}", code=_PART_ERRORS[code]
                ) from error
            if code == "NoSuchUpload":
                raise NotFoundError(f"no upload {upload_id} of {key}", code="upload_not_found") from error
            raise StorageUnavailableError(f"S3 complete multipart upload of {key} failed: {code}") from error
        return str(response.get("ETag", "")).strip('"')

    def abort_multipart_upload(self, key: str, upload_id: str) -> bool:
        try:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
        except ClientError as error:
            if _code(error) == "NoSuchUpload":
                return False
            raise StorageUnavailableError(
                f"S3 abort multipart upload of {key} failed: {_code(error)}"
            ) from error
        return True

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        while True:
            # Always the first page: what the previous round listed is gone, and a delete that failed
            # raises instead of being listed again forever.
            try:
                page = self._client.list_object_versions(
                    Bucket=self._bucket, Prefix=prefix, MaxKeys=DELETE_BATCH
                )
            except ClientError as error:
                raise StorageUnavailableError(
                    f"S3 list versions of {prefix} failed: {_code(error)}"
                ) from error
            # Versions and delete markers together are at most MaxKeys (deleted DELETE_BATCH at a time
            # all the same).
            listed = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            if not listed:
                return deleted
            for start in range(0, len(listed), DELETE_BATCH):
                self._delete_versions(prefix, listed[start : start + DELETE_BATCH])
            deleted += len(listed)

    def _delete_versions(self, prefix: str, listed: list[dict[str, Any]]) -> None:
        targets = [{"Key": entry["Key"], "VersionId": entry["VersionId"]} for entry in listed]
        try:
            response = self._client.delete_objects(
                Bucket=self._bucket, Delete={"Objects": targets, "Quiet": True}
            )
        except ClientError as error:
            raise StorageUnavailableError(f"S3 delete under {prefix} failed: {_code(error)}") from error
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise StorageUnavailableError(
                f"S3 could not delete {len(errors)} versions under {prefix}, e.g. "
                f"{first.get('Key')} ({first.get('Code')})"
            )


def _sign_checksum(params: dict[str, Any], headers: dict[str, str], sha256: str | None) -> None:
    """Add a SHA-256 (hex) to a presigned PUT's (put_object's or upload_part's) parameters and to the
    headers its client must send; nothing without one."""
    if sha256 is None:
        return
    # A declared SHA-256 is signed as a header (x-amz-checksum-sha256, with the algorithm named): S3
    # computes the digest of the bytes it receives and refuses (400 BadDigest) a body that does not
    # match. As headers, not query parameters: S3 ignores a checksum hoisted into the query string.
    # Given both, botocore neither computes a checksum of its own nor moves it to a trailer, so the
    # URL works with a plain HTTP client.
    checksum = sha256_base64(sha256)
    params.update(ChecksumSHA256=checksum, ChecksumAlgorithm="SHA256")
    headers.update({"x-amz-checksum-sha256": checksum, "x-amz-sdk-checksum-algorithm": "SHA256"})


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))
