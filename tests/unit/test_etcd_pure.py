"""The pure parts of lab.etcd: names, prefixes, flags, argv, certificate diagnosis, proto clean-up."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from support import certs

from lab import pki
from lab.config import Ports, Settings
from lab.errors import LabError, UsageError
from lab.etcd import proto, server, tenants
from lab.etcd.client import grpc_target, prefix_end


def test_prefix_ends_with_a_slash_so_test_1_is_not_test_10() -> None:
    p = tenants.key_prefix("test-1")
    assert p == b"/test-1/"
    end = prefix_end(p)
    assert end == b"/test-10"  # "/" + 1 == "0": the range [/test-1/, /test-10) holds no /test-10/ key
    for other in (b"/test-10/x", b"/test-100/x", b"/test-1", b"/test-11/x"):
        assert not (p <= other < end), other
    assert p <= b"/test-1/registry/pods/default/x" < end


def test_prefix_end_edge_cases() -> None:
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"  # etcd's "to the end of the keyspace"


@pytest.mark.parametrize("bad", ["", "Test-1", "test_1", "-a", "a-", "a" * 64, "/x", "root"])
def test_tenant_names_are_dns_labels_and_never_root(bad: str) -> None:
    with pytest.raises(UsageError):
        tenants.key_prefix(bad)


def test_apiserver_flags() -> None:
    flags = tenants.apiserver_etcd_flags(
        "test-7", "https://127.0.0.1:2379", "/p/etcd-ca.crt", "/p/client.crt", "/p/client.key"
    )
    assert flags == [
        "--etcd-servers=https://127.0.0.1:2379",
        "--etcd-prefix=/test-7",
        "--etcd-cafile=/p/etcd-ca.crt",
        "--etcd-certfile=/p/client.crt",
        "--etcd-keyfile=/p/client.key",
        "--etcd-compaction-interval=0",
    ]
    many = tenants.apiserver_etcd_flags("t", ["https://a:2379", "https://b:2379"], "c", "d", "e")
    assert many[0] == "--etcd-servers=https://a:2379,https://b:2379"


def test_tenant_permissions_are_its_prefix_only() -> None:
    assert tenants.tenant_permissions("test-3") == [("READWRITE", b"/test-3/", b"/test-30")]


def test_grpc_target() -> None:
    assert grpc_target("https://127.0.0.1:2379") == "127.0.0.1:2379"
    for bad in ("http://127.0.0.1:2379", "127.0.0.1:2379", "https://127.0.0.1"):
        with pytest.raises(LabError):
            grpc_target(bad)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", ports=Ports(tenant_etcd=23790, tenant_etcd_peer=23800))


def test_etcd_command_is_tls_only_loopback_with_auth_and_compaction(settings: Settings) -> None:
    argv = server.etcd_command(settings, Path("/opt/etcd"))
    assert argv[0] == "/opt/etcd"
    flags = dict(a.removeprefix("--").split("=", 1) for a in argv[1:])
    assert flags["listen-client-urls"] == "https://127.0.0.1:23790" == server.client_url(settings)
    assert flags["listen-peer-urls"] == "https://127.0.0.1:23800"
    assert flags["client-cert-auth"] == flags["peer-client-cert-auth"] == "true"
    assert flags["trusted-ca-file"] == str(settings.pki_dir / "etcd-ca" / "ca.crt")
    assert (flags["auto-compaction-mode"], flags["auto-compaction-retention"]) == ("periodic", "5m")
    assert flags["quota-backend-bytes"] == str(8 * 1024**3)
    assert flags["data-dir"] == str(settings.home / "etcd" / "tenants")
    assert not any(u.startswith("http://") for k, u in flags.items() if k.endswith("urls"))


def test_ensure_pki_is_stable_private_and_root_is_cn_root(settings: Settings) -> None:
    first = server.ensure_pki(settings)
    again = server.ensure_pki(settings)
    assert first == again
    assert server.common_name(first.root.cert) == "root"
    d = server.etcd_pki_dir(settings)
    for key in ("server.key", "root.key"):
        assert (d / key).stat().st_mode & 0o777 == 0o600
    assert (server.etcd_ca_dir(settings) / "ca.key").stat().st_mode & 0o777 == 0o600
    san = first.server.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert server.load_pki(settings) == first


def test_load_pki_never_creates(settings: Settings) -> None:
    with pytest.raises(LabError, match="no certificates"):
        server.load_pki(settings)
    assert not settings.pki_dir.exists()


def _cert(ca: pki.KeyPair, cn: str, before: dt.datetime, after: dt.datetime) -> bytes:
    return certs.client_cert(ca, cn, before, after).cert_pem


def test_diagnose_names_the_cause() -> None:
    ca = pki.new_ca("etcd-ca")
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    day = dt.timedelta(days=1)
    good = _cert(ca, "t-1", now - day, now + day)
    assert tenants.diagnose(good, ca.cert_pem, "t-1", now) is None
    assert tenants.diagnose(_cert(ca, "t-1", now - 2 * day, now - day), ca.cert_pem, "t-1", now) == (
        "certificate has expired (not after 2029-12-31T00:00:00Z)"
    )
    assert "not valid yet" in (
        tenants.diagnose(_cert(ca, "t-1", now + day, now + 2 * day), ca.cert_pem, "t-1", now) or ""
    )
    other = pki.new_ca("someone-else")
    assert (
        tenants.diagnose(_cert(other, "t-1", now - day, now + day), ca.cert_pem, "t-1", now)
        == "certificate is not signed by the etcd CA (issuer CN=someone-else)"
    )
    assert (
        tenants.diagnose(good, ca.cert_pem, "t-2", now)
        == "certificate CN is 't-1', not the tenant's user 't-2'"
    )
    assert tenants.diagnose(b"junk", ca.cert_pem, "t-1", now) == "the certificate is not valid PEM"


_SAMPLE_PROTO = """syntax = "proto3";
package demo;

import "gogoproto/gogo.proto";
import "etcd/api/mvccpb/kv.proto";
import "google/api/annotations.proto";

option (gogoproto.marshaler_all) = true;
option go_package = "example.com/demo";

service Demo {
  // a comment with [brackets] and { braces }
  rpc Get(Req) returns (Resp) {
      option (google.api.http) = {
        post: "/v3/demo"
        body: "*"
    };
  }
}

message Req {
  option (versionpb.etcd_version_msg) = "3.0";
  int64 a = 1 [(versionpb.etcd_version_field)="3.1"];
  mvccpb.KeyValue kv = 2;
}
"""


def test_strip_annotations_keeps_the_wire_format_and_drops_codegen_options() -> None:
    out = proto.strip_annotations(_SAMPLE_PROTO)
    assert "gogoproto" not in out and "google.api" not in out and "versionpb" not in out
    assert 'import "labetcdapi/mvccpb/kv.proto";' in out
    assert 'option go_package = "example.com/demo";' in out
    assert "rpc Get(Req) returns (Resp) {" in out
    assert "int64 a = 1;" in out and "mvccpb.KeyValue kv = 2;" in out
    assert out.count("{") == out.count("}")


def test_tenants_sort_by_number() -> None:
    names = ["test-10", "test-2", "other", "test-1", "test-100"]
    assert sorted(names, key=tenants._natural) == ["other", "test-1", "test-2", "test-10", "test-100"]
