"""infra/terraform checked against the code: entry points, settings, topics, IAM, indexes.

The configuration is parsed with python-hcl2; no provider or Google Cloud access is needed.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from modeldrop.adapters import firestore_store
from modeldrop.bundle import DEFAULT_OUTPUT
from modeldrop.local import stack
from modeldrop.settings import SETTINGS
from tests.infra.conftest import ROOT, TERRAFORM_DIR
from tests.infra.hcl import Terraform, reference, single, walk

FUNCTIONS_DIR = ROOT / "functions"
FUNCTION = "google_cloudfunctions2_function"
# Settings the functions get from Secret Manager instead of plain environment variables.
SECRET_ONLY = {"MODELDROP_API_TOKENS"}
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}


def functions(tf: Terraform) -> dict[str, dict]:
    return tf.resources[FUNCTION]


def service_config(tf: Terraform, name: str) -> dict:
    return single(tf.resource(FUNCTION, name)["service_config"])


def env_names() -> set[str]:
    return {setting.env for setting in SETTINGS.values()}


def expressions(value: object) -> list[str]:
    return [leaf for _, leaf in walk(value) if isinstance(leaf, str) and "${" in leaf]


def _dynamic(body: dict, label: str) -> dict:
    """The one `dynamic "<label>"` block of a body."""
    found = [block[label] for block in body.get("dynamic", []) if label in block]
    assert len(found) == 1, (label, found)
    return found[0]


# -- the functions ---------------------------------------------------------------------------


def test_four_functions_from_one_bundle(terraform: Terraform) -> None:
    fns = functions(terraform)
    assert set(fns) == {"validate", "deploy", "reconcile", "api"}
    for name, body in fns.items():
        assert body["name"] == f"modeldrop-{name}"
        build = single(body["build_config"])
        assert build["runtime"] == "${var.python_runtime}"
        source = single(single(build["source"])["storage_source"])
        assert source == {
            "bucket": "${local.build_source.bucket}",
            "object": "${local.build_source.object}",
        }
    assert re.fullmatch(r"python3\d+", terraform.variables["python_runtime"]["default"])
    bundle = terraform.resource("google_storage_bucket_object", "bundle")
    assert "filemd5(local.bundle_path)" in bundle["name"], "a changed bundle must redeploy"
    assert str(DEFAULT_OUTPUT) in terraform.locals["bundle_path"]


def _decorated_functions(path: Path) -> dict[str, str]:
    """Top-level function name -> functions_framework decorator (http, cloud_event)."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if (
                    isinstance(decorator, ast.Attribute)
                    and isinstance(decorator.value, ast.Name)
                    and decorator.value.id == "functions_framework"
                ):
                    found[node.name] = decorator.attr
    return found


def _main_exports() -> set[str]:
    tree = ast.parse((FUNCTIONS_DIR / "main.py").read_text())
    imported = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    exported = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            exported = set(ast.literal_eval(node.value))
    return imported & exported


def test_every_entry_point_exists_in_functions(terraform: Terraform) -> None:
    exports = _main_exports()
    for name, body in functions(terraform).items():
        entry = single(body["build_config"])["entry_point"]
        module = FUNCTIONS_DIR / f"{entry}.py"
        assert module.exists(), f"{name}: entry point {entry} has no functions/{entry}.py"
        assert entry in _decorated_functions(module), f"functions/{entry}.py defines no {entry}"
        assert entry in exports, f"functions/main.py does not export {entry}"


def test_triggers_match_the_signatures(terraform: Terraform) -> None:
    signature = {
        name: _decorated_functions(FUNCTIONS_DIR / f"{name}.py")[name]
        for name in functions(terraform)
    }
    assert signature == {
        "validate": "cloud_event",
        "deploy": "cloud_event",
        "reconcile": "cloud_event",
        "api": "http",
    }
    fns = functions(terraform)
    # api: HTTP. deploy: delivered by its own push subscription (retries + dead letter).
    assert "event_trigger" not in fns["api"]
    assert "event_trigger" not in fns["deploy"]

    validate = single(fns["validate"]["event_trigger"])
    assert validate["event_type"] == "google.cloud.storage.object.v1.finalized"
    assert validate["retry_policy"] == "RETRY_POLICY_RETRY"
    assert validate["trigger_region"] == "${var.region}"
    assert validate["event_filters"] == [
        {"attribute": "bucket", "value": "${google_storage_bucket.models.name}"}
    ]
    models = terraform.resource("google_storage_bucket", "models")
    assert models["location"] == "${var.region}", "a storage trigger lives in its bucket's region"
    assert models["uniform_bucket_level_access"] is True

    reconcile = single(fns["reconcile"]["event_trigger"])
    assert reconcile["event_type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert reconcile["pubsub_topic"] == "${google_pubsub_topic.tick.id}"
    for name in ("validate", "reconcile"):
        trigger = single(fns[name]["event_trigger"])
        assert trigger["service_account_email"] == "${google_service_account.trigger.email}"


def test_deploy_subscription_retries_and_dead_letters(terraform: Terraform) -> None:
    sub = terraform.resource("google_pubsub_subscription", "deploy")
    assert sub["name"] == "${local.deploy_subscription}"
    assert sub["topic"] == "${google_pubsub_topic.validated.id}"
    push = single(sub["push_config"])
    # functions-framework turns a push envelope POSTed to /projects/P/topics/T into the
    # messagePublished CloudEvent the deploy function expects (see test_bundle.py).
    assert push["push_endpoint"] == (
        "${google_cloudfunctions2_function.deploy.service_config[0].uri}"
        "/projects/${var.project}/topics/${google_pubsub_topic.validated.name}"
    )
    oidc = single(push["oidc_token"])
    assert oidc["service_account_email"] == "${google_service_account.push.email}"
    assert oidc["audience"] == "${google_cloudfunctions2_function.deploy.service_config[0].uri}"
    retry = single(sub["retry_policy"])
    assert retry["minimum_backoff"] and retry["maximum_backoff"]
    dead = single(sub["dead_letter_policy"])
    assert dead["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert dead["max_delivery_attempts"] == "${var.deploy_max_delivery_attempts}"
    assert 5 <= terraform.variables["deploy_max_delivery_attempts"]["default"] <= 100
    # An attempt must end (function timeout) before Pub/Sub stops waiting for it.
    assert service_config(terraform, "deploy")["timeout_seconds"] < sub["ack_deadline_seconds"]
    # Dead letters are kept somewhere, and Pub/Sub may move them.
    dl_sub = terraform.resource("google_pubsub_subscription", "dead_letter")
    assert dl_sub["topic"] == "${google_pubsub_topic.dead_letter.id}"
    agent = terraform.resource("google_pubsub_topic_iam_member", "pubsub_agent_dead_letters")
    assert agent["topic"] == "${google_pubsub_topic.dead_letter.name}"
    assert agent["role"] == "roles/pubsub.publisher"
    acks = terraform.resource(
        "google_pubsub_subscription_iam_member", "pubsub_agent_acks_dead_letters"
    )
    assert acks["subscription"] == "${google_pubsub_subscription.deploy.name}"
    assert acks["role"] == "roles/pubsub.subscriber"
    # Only the push identity may invoke deploy, and only from inside Google Cloud.
    invoker = terraform.resource("google_cloud_run_v2_service_iam_member", "push_invokes_deploy")
    assert invoker["name"] == "${google_cloudfunctions2_function.deploy.name}"
    assert invoker["member"] == "${google_service_account.push.member}"
    assert service_config(terraform, "deploy")["ingress_settings"] == "ALLOW_INTERNAL_ONLY"


def test_scheduler_ticks_every_minute(terraform: Terraform) -> None:
    job = terraform.resource("google_cloud_scheduler_job", "tick")
    assert job["schedule"] == "${var.reconcile_schedule}"
    assert terraform.variables["reconcile_schedule"]["default"] == "* * * * *"
    assert single(job["pubsub_target"])["topic_name"] == "${google_pubsub_topic.tick.id}"


def test_sizing_is_consistent(terraform: Terraform) -> None:
    for name in functions(terraform):
        config = service_config(terraform, name)
        assert config["timeout_seconds"] > 0 and config["available_memory"]
        if config.get("max_instance_request_concurrency", 1) > 1:
            assert float(config["available_cpu"]) >= 1, f"{name}: concurrency needs a whole CPU"
    # event-driven functions run at most 540 s; the settle window must fit in it
    assert service_config(terraform, "validate")["timeout_seconds"] <= 540
    settle_limit = re.search(
        r"settle_seconds <= (\d+)",
        single(terraform.variables["settle_seconds"]["validation"])["condition"],
    )
    assert settle_limit and int(settle_limit.group(1)) < 540
    upstream = terraform.variables["upstream_timeout_seconds"]["default"]
    assert service_config(terraform, "api")["timeout_seconds"] > upstream


# -- settings and names ----------------------------------------------------------------------


def test_every_setting_is_set(terraform: Terraform) -> None:
    env = terraform.locals["function_env"]
    missing = env_names() - SECRET_ONLY - set(env)
    assert not missing, f"local.function_env lacks settings the code reads: {sorted(missing)}"
    unknown = set(env) - env_names()
    assert not unknown, f"local.function_env sets variables no setting reads: {sorted(unknown)}"
    for name in functions(terraform):
        config = service_config(terraform, name)
        assert config["environment_variables"] == "${local.function_env}", name


def test_api_tokens_come_from_secret_manager(terraform: Terraform) -> None:
    assert not (SECRET_ONLY & set(terraform.locals["function_env"])), "tokens in plain text"
    secrets = terraform.locals["api_token_secrets"]
    assert "MODELDROP_API_TOKENS" in secrets and "var.api_tokens_secret_id" in secrets
    block = _dynamic(service_config(terraform, "api"), "secret_environment_variables")
    assert block["for_each"] == "${local.api_token_secrets}"
    for name in ("validate", "deploy", "reconcile"):
        assert "dynamic" not in service_config(terraform, name)
        assert "secret_environment_variables" not in service_config(terraform, name)
    grant = terraform.resource("google_secret_manager_secret_iam_member", "api_reads_tokens")
    assert grant["secret_id"] == "${var.api_tokens_secret_id}"
    assert grant["member"] == '${google_service_account.function["api"].member}'
    assert terraform.variables["api_tokens_secret_id"]["default"] is None


def test_topic_and_subscription_names_match_the_code(terraform: Terraform) -> None:
    topics = terraform.locals["topics"]
    assert topics["validated"] == SETTINGS["validated_topic"].default
    assert topics["events"] == SETTINGS["events_topic"].default
    assert topics["tick"] == stack.TICK_TOPIC
    for key in ("validated", "events", "tick", "dead_letter"):
        assert terraform.resource("google_pubsub_topic", key)["name"] == f"${{local.topics.{key}}}"
    env = terraform.locals["function_env"]
    assert env["MODELDROP_VALIDATED_TOPIC"] == "${google_pubsub_topic.validated.name}"
    assert env["MODELDROP_EVENTS_TOPIC"] == "${google_pubsub_topic.events.name}"
    # The local stack wires the same functions to the same topics.
    assert stack.FUNCTIONS["deploy"][1] == "validated_topic"
    assert stack.FUNCTIONS["reconcile"][1] == topics["tick"]
    assert terraform.locals["deploy_subscription"] == "modeldrop-deploy"


def test_variable_defaults_match_the_settings(terraform: Terraform) -> None:
    pairs = {
        "region": "region",
        "vertex_regions": "regions",
        "root_prefix": "root_prefix",
        "completion_mode": "completion_mode",
        "marker_name": "marker_name",
        "settle_seconds": "settle_seconds",
        "base_model_policy": "base_policy",
        "firestore_collection": "collection",
        "lease_seconds": "lease_seconds",
        "upstream_timeout_seconds": "upstream_timeout",
        "max_body_bytes": "max_body_bytes",
        "record_cache_seconds": "record_cache_seconds",
        "publish_timeout_seconds": "publish_timeout",
        "api_base_url": "api_base_url",
        "max_attempts": "max_attempts",
    }
    for variable, setting in pairs.items():
        default = terraform.variables[variable]["default"]
        expected = SETTINGS[setting].parse(SETTINGS[setting].default)
        assert type(expected)(default) == expected, (variable, default, expected)


def test_the_issue_variables_and_outputs_exist(terraform: Terraform) -> None:
    wanted = {
        "project",
        "region",
        "bucket",
        "root_prefix",
        "completion_mode",
        "settle_seconds",
        "base_model_policy",
        "default_machine_spec",
        "psc_project_allowlist",
        "invoker_members",
        "api_tokens_secret_id",
    }
    assert wanted <= set(terraform.variables)
    assert "default" not in terraform.variables["project"], "project is required"
    for name, variable in terraform.variables.items():
        assert variable.get("description"), f"variable {name} has no description"
    assert {"api_url", "topics", "bucket"} <= set(terraform.outputs)
    assert terraform.outputs["api_url"]["value"] == (
        "${google_cloudfunctions2_function.api.service_config[0].uri}"
    )


# -- IAM -------------------------------------------------------------------------------------


def _members(terraform: Terraform) -> list[tuple[str, str]]:
    return [
        (f"{rtype}.{name}", leaf)
        for rtype, named in terraform.resources.items()
        for name, body in named.items()
        for path, leaf in walk(body)
        if path.split(".")[-1].split("[")[0] in {"member", "members"}
    ]


def test_the_api_is_not_public(terraform: Terraform) -> None:
    for where, member in _members(terraform):
        assert not any(p in str(member) for p in PUBLIC_MEMBERS), f"{where}: {member}"
    # the only invoker grants on the api are the listed members
    api_grants = [
        name
        for rtype, named in terraform.resources.items()
        if rtype.endswith("_iam_member") or rtype.endswith("_iam_binding")
        for name, body in named.items()
        if "google_cloudfunctions2_function.api" in str(body)
    ]
    assert api_grants == ["api_invokers"]
    grant = terraform.resource("google_cloud_run_v2_service_iam_member", "api_invokers")
    assert grant["role"] == "roles/run.invoker"
    assert grant["for_each"] == "${toset(var.invoker_members)}"
    validation = single(terraform.variables["invoker_members"]["validation"])["condition"]
    assert "allUsers" in validation and "allAuthenticatedUsers" in validation
    assert terraform.variables["invoker_members"]["default"] == []


def test_no_basic_roles_and_no_authoritative_bindings(terraform: Terraform) -> None:
    roles = set(re.findall(r"roles/[A-Za-z.]+", terraform.all_text()))
    assert roles and not (roles & BASIC_ROLES), sorted(roles & BASIC_ROLES)
    for rtype in terraform.resources:
        # *_iam_policy / *_iam_binding replace grants made outside this configuration
        assert not rtype.endswith(("_iam_policy", "_iam_binding")), rtype


def test_one_service_account_per_function(terraform: Terraform) -> None:
    emails = {}
    for name in functions(terraform):
        emails[name] = service_config(terraform, name)["service_account_email"]
        assert emails[name] == f'${{google_service_account.function["{name}"].email}}'
    accounts = terraform.resource("google_service_account", "function")
    assert accounts["for_each"] == "${local.function_access}"
    assert set(terraform.locals["function_access"]) == set(functions(terraform))


def test_function_roles_are_least_privilege(terraform: Terraform) -> None:
    access = terraform.locals["function_access"]
    assert {fn for fn, a in access.items() if a["vertex"]} == {"deploy", "reconcile", "api"}
    assert {fn for fn, a in access.items() if a["reads_models"]} == {
        "validate",
        "deploy",
        "reconcile",
    }
    # publishers on their own topics only: validate and reconcile queue work for deploy
    assert {fn: set(a["topics"]) for fn, a in access.items()} == {
        "validate": {"validated", "events"},
        "deploy": {"events"},
        "reconcile": {"validated", "events"},
        "api": {"events"},
    }
    viewers = terraform.resource("google_storage_bucket_iam_member", "function_reads_models")
    assert viewers["role"] == "roles/storage.objectViewer"
    assert viewers["bucket"] == "${google_storage_bucket.models.name}"
    project_roles = {
        body["role"]
        for body in terraform.resources["google_project_iam_member"].values()
        if not str(body["role"]).startswith("${")
    }
    project_roles |= set(
        re.findall(r"roles/[\w.]+", str(terraform.resource("google_project_iam_member", "build")))
    )
    assert project_roles == {
        "roles/datastore.user",  # Firestore user (functions)
        "roles/aiplatform.user",  # Vertex AI user (functions that deploy or query)
        "roles/eventarc.eventReceiver",  # the trigger identity
        "roles/pubsub.publisher",  # the Cloud Storage service agent (storage trigger)
        "roles/cloudbuild.builds.builder",  # the build identity
        "roles/logging.logWriter",  # the build identity
        "roles/logging.viewer",  # api and reconcile read the model servers' logs
    }
    assert {fn for fn, a in access.items() if a["reads_logs"]} == {"api", "reconcile"}
    # the private path: the functions that poll or end deploys connect/disconnect endpoints
    assert {fn for fn, a in access.items() if a["psc_endpoints"]} == {"deploy", "reconcile", "api"}
    gcs = terraform.resource("google_project_iam_member", "gcs_agent_publishes")
    assert gcs["member"] == "${data.google_storage_project_service_account.gcs.member}"
    receiver = terraform.resource("google_project_iam_member", "trigger_receives_events")
    assert receiver["member"] == "${google_service_account.trigger.member}"
    for fn in ("validate", "reconcile"):
        grant = terraform.resource(
            "google_cloud_run_v2_service_iam_member", f"trigger_invokes_{fn}"
        )
        assert grant["role"] == "roles/run.invoker"
        assert grant["name"] == f"${{google_cloudfunctions2_function.{fn}.name}}"


# -- the private path (Private Service Connect) ----------------------------------------------

# Exactly the Compute Engine permissions connecting and disconnecting a private deployment
# needs (iam.tf names the API call and the Google documentation behind each).
PSC_ENDPOINT_PERMISSIONS = {
    "compute.addresses.createInternal",  # addresses.insert, addressType INTERNAL
    "compute.addresses.deleteInternal",  # addresses.delete of an internal address
    "compute.addresses.get",  # the reserved IP
    "compute.addresses.use",  # the forwarding rule takes the address
    "compute.addresses.useInternal",  # ... an internal one
    "compute.forwardingRules.create",  # forwardingRules.insert
    "compute.forwardingRules.pscCreate",  # ... whose target is a service attachment
    "compute.forwardingRules.get",  # pscConnectionStatus
    "compute.forwardingRules.delete",  # forwardingRules.delete
    "compute.forwardingRules.pscDelete",  # ... of a PSC forwarding rule
    "compute.networks.use",  # the rule's network
    "compute.subnetworks.use",  # the address's subnetwork
    "compute.regionOperations.get",  # waiting for the inserts and deletes
}
# Predefined roles that would grant far more than that (and the basic ones).
BROAD_ROLES = BASIC_ROLES | {
    "roles/compute.admin",
    "roles/compute.networkAdmin",
    "roles/compute.loadBalancerAdmin",
    "roles/compute.networkUser",
    "roles/compute.instanceAdmin",
    "roles/compute.instanceAdmin.v1",
    "roles/vpcaccess.admin",
}
PSC_VARIABLES = {
    "psc_network",
    "psc_subnetwork",
    "create_psc_subnetwork",
    "psc_subnetwork_cidr",
    "psc_subnetwork_cidrs",
}


def _granted_roles(terraform: Terraform) -> dict[str, str]:
    return {
        f"{rtype}.{name}": str(body["role"])
        for rtype, named in terraform.resources.items()
        if rtype.endswith("_iam_member")
        for name, body in named.items()
    }


def test_private_path_variables(terraform: Terraform) -> None:
    assert set(terraform.variables) >= PSC_VARIABLES
    defaults = {name: terraform.variables[name]["default"] for name in PSC_VARIABLES}
    assert defaults == {
        "psc_network": None,  # no private path unless asked
        "psc_subnetwork": None,
        "create_psc_subnetwork": False,
        "psc_subnetwork_cidr": None,
        "psc_subnetwork_cidrs": {},
    }
    for name in PSC_VARIABLES - {"create_psc_subnetwork"}:
        validation = single(terraform.variables[name]["validation"])
        assert validation["error_message"].startswith(name), name
    for name in ("psc_subnetwork_cidr", "psc_subnetwork_cidrs"):
        condition = single(terraform.variables[name]["validation"])["condition"]
        for block in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"):
            assert f'"{block}"' in condition, (name, block)
    # Rules between variables are preconditions (Terraform 1.5 validates a variable alone).
    rules = single(terraform.resource("terraform_data", "psc_settings")["lifecycle"])
    messages = " ".join(rule["error_message"] for rule in rules["precondition"])
    for needed in (
        "psc_subnetwork is required when psc_network is set",
        "psc_subnetwork_cidr is required when create_psc_subnetwork is true",
        "psc_subnetwork_cidrs needs a range for each Vertex AI region",
    ):
        assert needed in messages, needed


def test_private_path_settings(terraform: Terraform) -> None:
    env = terraform.locals["function_env"]
    assert env["MODELDROP_PSC_NETWORK"] == '${local.psc_enabled ? var.psc_network : ""}'
    assert "var.psc_subnetwork" in env["MODELDROP_PSC_SUBNETWORK"]
    assert env["MODELDROP_PSC_SUBNETWORK"].endswith(': ""}'), "unset: empty"
    assert env["MODELDROP_COMPUTE_API_ENDPOINT"] == "https://compute.googleapis.com"
    assert env["MODELDROP_PSC_PORT"] == "443"
    assert terraform.locals["psc_enabled"] == "${var.psc_network != null}"
    # Compute Engine is enabled with the private path; no connector API is needed.
    assert terraform.locals["private_path_services"] == ["compute.googleapis.com"]
    assert "local.private_path_services" in terraform.locals["services"]
    assert "var.psc_network == null ? []" in terraform.locals["services"]
    assert "compute.googleapis.com" not in terraform.locals["always_enabled_services"]
    assert "vpcaccess.googleapis.com" not in terraform.all_text()


def test_private_path_subnetworks(terraform: Terraform) -> None:
    subnet = terraform.resource("google_compute_subnetwork", "psc")
    assert subnet["for_each"] == "${local.psc_subnetwork_cidrs}"
    assert subnet["name"] == "${var.psc_subnetwork}"  # the same name in every region
    assert subnet["network"] == "${var.psc_network}"
    assert subnet["region"] == "${each.key}"
    assert subnet["private_ip_google_access"] is True
    cidrs = terraform.locals["psc_subnetwork_cidrs"]
    assert "local.psc_enabled && var.create_psc_subnetwork" in cidrs
    regions = terraform.locals["psc_regions"]
    for needed in ("var.region", "local.vertex_region", "var.vertex_regions"):
        assert needed in regions, needed
    # The network itself is never created.
    assert "google_compute_network" not in terraform.resources
    # Functions that create addresses in the subnetworks wait for them.
    for name in ("deploy", "reconcile", "api"):
        depends = functions(terraform)[name]["depends_on"]
        assert "${google_compute_subnetwork.psc}" in depends, name


def test_private_path_egress_is_the_apis_only(terraform: Terraform) -> None:
    api = service_config(terraform, "api")
    interface = _dynamic(api, "direct_vpc_network_interface")
    assert interface["for_each"] == "${local.api_vpc_egress}"
    content = single(interface["content"])
    assert set(content) == {"network", "subnetwork", "tags"}
    egress = terraform.locals["api_vpc_egress"]
    assert egress.startswith("${local.psc_enabled ? [") and egress.endswith("] : []}")
    assert "network = var.psc_network" in egress
    assert "subnetwork = var.psc_subnetwork" in egress
    # private ranges only: Google APIs and public endpoints keep their usual path
    assert api["direct_vpc_egress"] == (
        '${local.psc_enabled ? "VPC_EGRESS_PRIVATE_RANGES_ONLY" : null}'
    )
    networking = {"direct_vpc_network_interface", "direct_vpc_egress", "vpc_connector"}
    for name in functions(terraform):
        config = service_config(terraform, name)
        keys = set(config) | {label for block in config.get("dynamic", []) for label in block}
        if name != "api":
            assert not keys & networking, f"{name} must not reach into the VPC"
        assert "vpc_connector" not in keys
        assert "vpc_connector_egress_settings" not in keys
    assert not any(rtype.startswith("google_vpc_access") for rtype in terraform.resources)
    assert "ALL_TRAFFIC" not in str(terraform.resources)


def test_private_path_permissions_are_least_privilege(terraform: Terraform) -> None:
    role = terraform.resource("google_project_iam_custom_role", "psc_endpoints")
    assert role["count"] == "${local.psc_enabled ? 1 : 0}"
    assert role["permissions"] == "${local.psc_endpoint_permissions}"
    permissions = terraform.locals["psc_endpoint_permissions"]
    assert len(permissions) == len(set(permissions)), "duplicates"
    assert set(permissions) == PSC_ENDPOINT_PERMISSIONS
    grant = terraform.resource("google_project_iam_member", "function_psc_endpoints")
    assert grant["role"] == "${google_project_iam_custom_role.psc_endpoints[0].name}"
    assert grant["member"] == "${google_service_account.function[each.key].member}"
    assert grant["for_each"] == (
        "${local.psc_enabled ? "
        "{for fn, access in local.function_access : fn => access if access.psc_endpoints}"
        " : {}}"
    )
    access = terraform.locals["function_access"]
    assert {fn for fn, a in access.items() if a["psc_endpoints"]} == {"deploy", "reconcile", "api"}
    # Nothing holds a broad predefined role, and the custom role is granted by that one
    # resource only.
    granted = _granted_roles(terraform)
    broad = {where: r for where, r in granted.items() if r in BROAD_ROLES}
    assert not broad, broad
    assert [w for w, r in granted.items() if "psc_endpoints" in r] == [
        "google_project_iam_member.function_psc_endpoints"
    ]
    assert not any(r.startswith("roles/compute.") for r in granted.values())


def test_provider_has_direct_vpc_egress(terraform: Terraform) -> None:
    google = single(single(terraform.files["versions.tf"]["terraform"])["required_providers"])
    low = re.search(r">=\s*(\d+)\.(\d+)", google["google"]["version"])
    assert low, google
    # google_cloudfunctions2_function's direct_vpc_network_interface is GA from 7.21.0
    assert (int(low[1]), int(low[2])) >= (7, 21), google["google"]["version"]


# The psc_* rules run through Terraform itself: the variables, network.tf's locals and its
# preconditions in a scratch module that needs no provider (terraform_data is built in).


def _top_level_blocks(text: str) -> dict[str, str]:
    """Header line -> text of each top-level block of a `terraform fmt`ed file."""
    blocks: dict[str, str] = {}
    header, lines = None, []
    for line in text.splitlines():
        if header is None:
            if line.endswith("{") and not line.startswith(("#", " ")):
                header, lines = line.removesuffix("{").strip(), [line]
        else:
            lines.append(line)
            if line == "}":
                blocks[header] = "\n".join(lines)
                header = None
    return blocks


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory, terraform: Terraform) -> tuple[str, Path]:
    binary = shutil.which("terraform") or shutil.which("tofu")
    if binary is None:
        pytest.skip("terraform (or tofu) is not installed: the psc_* rules are not run")
    directory = tmp_path_factory.mktemp("psc")
    (directory / "variables.tf").write_text(terraform.text["variables.tf"])
    network = _top_level_blocks(terraform.text["network.tf"])
    assert terraform.locals["vertex_region"] == "${coalesce(var.vertex_region, var.region)}"
    (directory / "network.tf").write_text(
        network["locals"]
        + "\n"
        + network['resource "terraform_data" "psc_settings"']
        + """
locals {
  vertex_region = coalesce(var.vertex_region, var.region)
}
output "psc" {
  value = {
    regions = local.psc_regions
    cidrs   = local.psc_subnetwork_cidrs
    egress  = local.api_vpc_egress
  }
}
"""
    )
    result = _terraform(binary, directory, "init", "-input=false", "-backend=false")
    assert result.returncode == 0, result.stdout + result.stderr
    return binary, directory


def _terraform(binary: str, directory: Path, *args: str, stdin: str | None = None):
    return subprocess.run(
        [binary, f"-chdir={directory}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"},
    )


def _plan(scratch: tuple[str, Path], **variables: object) -> tuple[bool, str, dict]:
    """(planned fine, messages, the psc output) for `project` plus these variables."""
    binary, directory = scratch
    var_file = directory / "case.tfvars.json"
    var_file.write_text(json.dumps({"project": "my-project", **variables}))
    plan = directory / "case.plan"
    result = _terraform(
        binary, directory, "plan", "-input=false", "-no-color", "-lock=false",
        f"-var-file={var_file}", f"-out={plan}",
    )  # fmt: skip
    if result.returncode != 0:
        return False, " ".join((result.stdout + result.stderr).split()), {}
    shown = _terraform(binary, directory, "show", "-json", str(plan))
    assert shown.returncode == 0, shown.stderr
    outputs = json.loads(shown.stdout)["planned_values"]["outputs"]
    return True, "", outputs["psc"]["value"]


@pytest.mark.parametrize(
    ("cidr", "ok"),
    [
        ("10.10.0.0/24", True),
        ("172.31.255.0/26", True),
        ("192.168.0.0/16", True),
        ("100.64.0.0/20", True),  # RFC 6598
        ("8.8.8.0/24", False),  # public
        ("172.32.0.0/24", False),  # just outside 172.16.0.0/12
        ("100.128.0.0/24", False),  # just outside 100.64.0.0/10
        ("10.10.0.0/28", False),  # smaller than Direct VPC egress needs
        ("10.10.0.5/24", False),  # not the range's first address
        ("10.10.0.0", False),
        ("fd00::/64", False),
    ],
)
def test_private_path_cidr_must_be_private(scratch, cidr: str, ok: bool) -> None:
    planned, messages, psc = _plan(
        scratch,
        psc_network="my-vpc",
        psc_subnetwork="modeldrop-psc",
        create_psc_subnetwork=True,
        psc_subnetwork_cidr=cidr,
    )
    assert planned is ok, messages
    if ok:
        assert psc["cidrs"] == {"us-central1": cidr}
    if not ok:
        assert "psc_subnetwork_cidr must be an IPv4 range inside a private block" in messages


def test_private_path_rules_hold(scratch) -> None:
    planned, messages, psc = _plan(scratch)
    assert planned, messages
    assert psc == {"regions": [], "cidrs": {}, "egress": []}, "no private path by default"

    existing = {"psc_network": "my-vpc", "psc_subnetwork": "modeldrop-psc"}
    planned, messages, psc = _plan(scratch, **existing, psc_project_allowlist=["other-project"])
    assert planned, messages
    assert psc["regions"] == ["us-central1"] and psc["cidrs"] == {}
    assert psc["egress"] == [
        {"network": "my-vpc", "subnetwork": "modeldrop-psc", "tags": ["modeldrop-api"]}
    ]

    created = {
        **existing,
        "create_psc_subnetwork": True,
        "psc_subnetwork_cidr": "10.10.0.0/24",
        "vertex_regions": ["us-east4", "us-central1"],
        "psc_subnetwork_cidrs": {"us-east4": "10.10.1.0/26"},
    }
    planned, messages, psc = _plan(scratch, **created)
    assert planned, messages
    assert psc["cidrs"] == {"us-central1": "10.10.0.0/24", "us-east4": "10.10.1.0/26"}

    refused = [
        ({"psc_network": "my-vpc"}, "psc_subnetwork is required when psc_network is set"),
        ({"psc_subnetwork": "modeldrop-psc"}, "belong to the private path"),
        ({**existing, "create_psc_subnetwork": True}, "psc_subnetwork_cidr is required"),
        ({**created, "psc_subnetwork_cidrs": {}}, "missing: us-east4"),
        (
            {
                **created,
                "psc_subnetwork_cidrs": {"us-east4": "10.10.1.0/26", "asia-east1": "10.9.0.0/26"},
            },
            "asia-east1",
        ),
        ({**existing, "psc_subnetwork_cidr": "10.10.0.0/24"}, "set create_psc_subnetwork = true"),
        ({**created, "psc_subnetwork_cidrs": {"us-east4": "10.10.0.0/24"}}, "must differ"),
        ({"psc_network": "projects/p/global/networks/n"}, "psc_network must be the name"),
        ({"psc_subnetwork_cidrs": {"us-east4": "10.10.1.0/30"}}, "/29 or larger"),
    ]
    for variables, message in refused:
        planned, messages, _ = _plan(scratch, **variables)
        assert not planned, variables
        assert message in messages, (variables, messages)


# -- Firestore -------------------------------------------------------------------------------


def _store_docstring_indexes() -> list[list[dict[str, str]]]:
    doc = firestore_store.__doc__ or ""
    orders = {"ASC": "ASCENDING", "DESC": "DESCENDING"}
    indexes = []
    for line in re.findall(r"^- ([a-z_]+ (?:ASC|DESC)(?:, [a-z_]+ (?:ASC|DESC))*):", doc, re.M):
        fields = [part.split() for part in line.split(", ")]
        indexes.append([{"field": f, "order": orders[o]} for f, o in fields])
    assert indexes, "the store's docstring lists no composite indexes"
    return indexes


def test_firestore_indexes_match_the_store(terraform: Terraform) -> None:
    database = terraform.resource("google_firestore_database", "default")
    assert database["name"] == "(default)" and database["type"] == "FIRESTORE_NATIVE"
    declared = terraform.locals["firestore_indexes"]
    assert sorted(map(str, declared.values())) == sorted(map(str, _store_docstring_indexes()))
    index = terraform.resource("google_firestore_index", "deployments")
    assert index["collection"] == "${var.firestore_collection}"
    fields = single(index["dynamic"])["fields"]
    assert fields["for_each"] == "${each.value}"
    exempt = re.search(r"Exempting (.+?) from single-field", firestore_store.__doc__ or "", re.S)
    assert exempt
    assert set(terraform.locals["unindexed_fields"]) == set(re.findall(r"`(\w+)`", exempt[1]))


# -- the configuration itself ----------------------------------------------------------------


def test_references_resolve(terraform: Terraform) -> None:
    """A cheap stand-in for `terraform validate` (which needs the provider downloaded)."""
    exprs = [
        e
        for parsed in terraform.files.values()
        for block in parsed.values()
        for e in expressions(block)
    ]
    assert exprs
    text = "\n".join(exprs)
    for name in re.findall(r"\bvar\.(\w+)", text):
        assert name in terraform.variables, f"var.{name} is not declared"
    for name in re.findall(r"\blocal\.(\w+)", text):
        assert name in terraform.locals, f"local.{name} is not declared"
    for rtype, name in re.findall(r"\bdata\.(google_\w+)\.(\w+)", text):
        assert name in terraform.data.get(rtype, {}), f"data.{rtype}.{name} is not declared"
    for rtype, name in re.findall(r"(?<![\w.])(google_\w+)\.(\w+)", text):
        assert name in terraform.resources.get(rtype, {}), f"{rtype}.{name} is not declared"
    for expr in exprs:
        ref = reference(expr)
        if ref and ref.startswith('google_service_account.function["'):
            key = ref.split('"')[1]
            assert key in terraform.locals["function_access"], ref


def test_terraform_fmt() -> None:
    binary = shutil.which("terraform") or shutil.which("tofu")
    if binary is None:
        pytest.skip("terraform (or tofu) is not installed: formatting not checked")
    result = subprocess.run(
        [binary, "fmt", "-check", "-diff", "-recursive", str(TERRAFORM_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
