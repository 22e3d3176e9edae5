"""parse_gs_uri: bucket and folder prefix from a gs:// URI."""

from __future__ import annotations

import pytest

from modeldrop.adapters.gcs_folder import parse_gs_uri
from modeldrop.errors import UsageError


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("gs://bucket/models/tiny", ("bucket", "models/tiny")),
        ("gs://bucket/models/tiny/", ("bucket", "models/tiny")),
        ("gs://bucket", ("bucket", "")),
        ("gs://bucket/", ("bucket", "")),
        ("gs://my_bucket-2/a", ("my_bucket-2", "a")),
        ("gs://example.com.models/x y/z", ("example.com.models", "x y/z")),
        ("gs://abc/" + "m" * 300, ("abc", "m" * 300)),
        # names are literal prefixes: no wildcards
        ("gs://bucket/models/probe-a[b]", ("bucket", "models/probe-a[b]")),
        ("gs://bucket/models/*?", ("bucket", "models/*?")),
        ("gs://bucket/models/名 ü", ("bucket", "models/名 ü")),
    ],
)
def test_valid(uri, expected):
    assert parse_gs_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "bucket/models",
        "s3://bucket/models",
        "GS://bucket/models",
        "gs://",
        "gs:///models",
        "gs://ab/models",  # too short
        "gs://" + "b" * 64,  # too long without dots
        "gs://Bucket/models",  # upper case
        "gs://-bucket/models",
        "gs://bucket-/models",
        "gs://bu..cket/models",
        "gs://buc ket/models",
        "gs://bucket/models//tiny",
        "gs://bucket/models/../tiny",
        "gs://bucket/./tiny",
        "gs://bucket/models/\ntiny",
        "gs://bucket/models/\x85tiny",
        "gs://bucket/" + "m" * 1025,
    ],
)
def test_malformed(uri):
    with pytest.raises(UsageError) as err:
        parse_gs_uri(uri)
    assert err.value.hint
    assert err.value.code == "USAGE_ERROR"


def test_dotted_bucket_components_may_each_have_63_characters():
    name = ".".join(["a" * 63] * 3)
    assert parse_gs_uri(f"gs://{name}/m") == (name, "m")
    with pytest.raises(UsageError):
        parse_gs_uri(f"gs://{'a' * 64}.com/m")
