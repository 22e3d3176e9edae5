"""Private deployments on fakes: the PSC endpoint is made (address, then forwarding rule) before
the smoke test, which goes through it; undeploy removes rule and address before the endpoint;
a private folder without network settings is a validation finding."""

from __future__ import annotations

import pytest

from modeldrop.domain.deployment import State
from modeldrop.service.deploy import on_validated
from modeldrop.service.lifecycle import start_delete
from modeldrop.service.ports import DeployError
from modeldrop.service.reconcile import reconcile
from tests.fixtures.model_folders import write_valid
from tests.fixtures.uploads import upload_all
from tests.unit.service.fakes import make_harness

PRIVATE = "private_endpoint: {enabled: true, project_allowlist: [client-project]}\n"
NETWORK = {"MODELDROP_PSC_NETWORK": "vpc", "MODELDROP_PSC_SUBNETWORK": "models"}


@pytest.fixture
def private_folder(tmp_path):
    folder = write_valid(tmp_path / "src")
    (folder / "modeldrop.yaml").write_text(PRIVATE)
    return folder


def test_a_private_deployment_is_connected_before_its_smoke_test(tmp_path, private_folder):
    h = make_harness(tmp_path, **NETWORK)
    h.deployer.private = True
    record = upload_all(h, private_folder, name="secret")[-1]
    assert record.state is State.VALIDATED
    on_validated(h.ctx, record.id)
    h.deployer.finish()
    reconcile(h.ctx)  # the address is reserved
    reconcile(h.ctx)  # the rule is made
    assert h.store.get(record.id).state is State.DEPLOYING and h.endpoints.calls == []
    reconcile(h.ctx)  # the rule is ready: connected, smoke-tested through it
    done = h.store.get(record.id)
    assert done.state is State.DEPLOYED, done.error
    assert done.private_endpoint["ip"] == "10.0.0.2"
    assert done.private_endpoint["service_attachment"].endswith(done.vertex_id)
    assert [c[1] for c in h.endpoints.calls] == [record.id]  # the smoke request
    assert len(h.network.rules) == 1 and len(h.network.addresses) == 1


def test_undeploy_removes_rule_and_address_before_the_endpoint(tmp_path, private_folder):
    h = make_harness(tmp_path, **NETWORK)
    h.deployer.private = True
    record = upload_all(h, private_folder, name="secret")[-1]
    on_validated(h.ctx, record.id)
    h.deployer.finish()
    for _ in range(3):
        reconcile(h.ctx)
    deployed = h.store.get(record.id)
    undeploying = start_delete(h.ctx, deployed)
    assert undeploying.state is State.UNDEPLOYING
    assert deployed.endpoint in h.deployer.endpoints  # the rule goes first
    assert h.network.rules == {}
    reconcile(h.ctx)
    assert h.store.get(record.id).state is State.UNDEPLOYED
    assert h.network.addresses == {} and deployed.endpoint not in h.deployer.endpoints


def test_a_private_folder_without_network_settings_is_rejected(tmp_path, private_folder):
    h = make_harness(tmp_path)
    record = upload_all(h, private_folder, name="secret")[-1]
    assert record.state is State.REJECTED
    assert record.error["code"] == "PRIVATE_NETWORK_MISSING"
    assert "MODELDROP_PSC_NETWORK" in record.error["message"]
    assert "MODELDROP_PSC_SUBNETWORK" in record.error["hint"]


def test_the_folder_can_name_its_own_network(tmp_path):
    h = make_harness(tmp_path)
    folder = write_valid(tmp_path / "src")
    (folder / "modeldrop.yaml").write_text(
        "private_endpoint: {enabled: true, network: vpc-a, subnetwork: sub-a}\n"
    )
    assert upload_all(h, folder, name="secret")[-1].state is State.VALIDATED


def test_a_public_folder_needs_no_network(tmp_path):
    h = make_harness(tmp_path)
    assert upload_all(h, write_valid(tmp_path / "src"), name="open")[-1].state is State.VALIDATED


def test_a_private_deployment_stays_in_the_apis_region(tmp_path, private_folder):
    h = make_harness(tmp_path, MODELDROP_REGIONS="europe-west4,us-central1", **NETWORK)
    record = upload_all(h, private_folder, name="secret")[-1]
    planned = on_validated(h.ctx, record.id)
    assert {c["region"] for c in planned.candidates} == {h.ctx.settings.region}
    public = upload_all(h, write_valid(tmp_path / "open"), name="open")[-1]
    assert {c["region"] for c in on_validated(h.ctx, public.id).candidates} == {
        "europe-west4",
        "us-central1",
    }


def test_a_refused_private_connection_deletes_its_address_and_the_endpoint(
    tmp_path, private_folder
):
    h = make_harness(tmp_path, **NETWORK)
    h.deployer.private = True
    h.network.refusal = DeployError(
        "Compute Engine refused the forwarding rule: quota exceeded.",
        "Raise the quota.",
        code="COMPUTE_QUOTA",
    )
    record = upload_all(h, private_folder, name="secret")[-1]
    on_validated(h.ctx, record.id)
    h.deployer.finish()
    reconcile(h.ctx)  # the address is reserved
    assert len(h.network.addresses) == 1 and h.deployer.endpoints
    reconcile(h.ctx)  # the rule is refused: the attempt ends, its resources go
    failed = h.store.get(record.id)
    assert failed.state is State.FAILED and failed.error["code"] == "COMPUTE_QUOTA"
    assert failed.attempts[-1]["outcome"] == "error" and failed.endpoint is None
    assert h.network.addresses == {} and h.network.rules == {}
    assert h.deployer.endpoints == {} and h.endpoints.calls == []  # no smoke test
