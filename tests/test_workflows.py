"""The shipped workflows: each UI file and its *_api.json describe the same graph, every ComfyUI
core node matches the catalogue recorded from a real ComfyUI 0.3.64 server (tests/data, see its
README), and every Synesthesia node matches our own INPUT_TYPES."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synesthesia.nodes import workflow as W
from synesthesia.nodes import NODE_CLASS_MAPPINGS as OURS

ROOT = Path(__file__).resolve().parents[1]
OBJECT_INFO = ROOT / "tests" / "data" / "comfyui_object_info.json"
WF = ROOT / "workflows"
UI_FILES = sorted(WF.glob("*.json"))
API_FILES = sorted((WF / "api").glob("*_api.json"))
EXPECTED = {"sound_to_video", "sound_to_video_text", "video_to_foley", "video_to_foley_text"}


@pytest.fixture(scope="module")
def object_info():
    return json.loads(OBJECT_INFO.read_text())


def specs(object_info):
    return {k: W.spec_from_object_info(v) for k, v in object_info.items()}


def test_expected_workflows_are_shipped_in_both_formats():
    names = {p.stem for p in UI_FILES}
    assert EXPECTED <= names
    for p in UI_FILES:
        assert (WF / "api" / f"{p.stem}_api.json").is_file(), p
    assert {p.name for p in API_FILES} == {f"{p.stem}_api.json" for p in UI_FILES}


# ComfyUI (app/custom_node_manager.py, 0.3.64) offers as a pack's templates every
# `custom_nodes/*/<folder>/*.json` for these folder names (not recursive).
COMFYUI_TEMPLATE_FOLDERS = ["example_workflows", "example", "examples", "workflow", "workflows"]


def test_comfyui_lists_only_ui_workflows_as_templates():
    """API-format files fail to open as templates: they live where ComfyUI's template scan does not look."""
    listed = [p for folder in COMFYUI_TEMPLATE_FOLDERS for p in sorted((ROOT / folder).glob("*.json"))]
    assert {p.stem for p in listed} == EXPECTED
    for p in listed:
        assert W.is_ui_format(json.loads(p.read_text())), f"{p.relative_to(ROOT)} is listed as a template but is not a UI workflow"


@pytest.mark.parametrize("ui_path", UI_FILES, ids=lambda p: p.stem)
def test_ui_and_api_describe_the_same_graph(ui_path, object_info):
    ui = json.loads(ui_path.read_text())
    api = json.loads((WF / "api" / f"{ui_path.stem}_api.json").read_text())
    assert W.ui_to_api(ui, OURS, specs(object_info)) == api
    # links are consistent in the UI file itself: each link sits in its source's outputs and its target's inputs
    by_id = {n["id"]: n for n in ui["nodes"]}
    for lid, src, so, dst, di, typ in ui["links"]:
        assert lid in by_id[src]["outputs"][so]["links"]
        assert isinstance(di, int) and by_id[dst]["inputs"][di]["link"] == lid  # target slot is an index
        assert by_id[src]["outputs"][so]["type"] == typ
    assert ui["last_link_id"] == max(l[0] for l in ui["links"])
    assert ui["last_node_id"] == max(by_id)


@pytest.mark.parametrize("api_path", API_FILES, ids=lambda p: p.stem)
def test_every_node_matches_its_schema(api_path, object_info):
    api = json.loads(api_path.read_text())
    classes = {}
    for nid, node in api.items():
        ct = node["class_type"]
        if ct in OURS:
            spec, rtypes = OURS[ct].INPUT_TYPES(), OURS[ct].RETURN_TYPES
        else:
            assert ct in object_info, f"node {nid}: {ct} is neither ours nor a ComfyUI 0.3.64 core node"
            spec, rtypes = W.spec_from_object_info(object_info[ct]), tuple(object_info[ct]["output"])
        classes[nid] = (spec, rtypes)
        declared = {n: (t, o) for n, t, o in W.input_order(spec)}
        for name in (spec.get("required") or {}):
            assert name in node["inputs"], f"node {nid} ({ct}) lacks required input {name}"
        for name, value in node["inputs"].items():
            assert name in declared, f"node {nid} ({ct}) has unknown input {name}"
            typ, opts = declared[name]
            if isinstance(value, list):
                continue  # links are checked below
            if typ in ("INT", "FLOAT"):
                assert opts.get("min", value) <= value <= opts.get("max", value), (nid, name)
            elif typ == "BOOLEAN":
                assert isinstance(value, bool), (nid, name)
            elif typ == "STRING":
                assert isinstance(value, str), (nid, name)
            elif isinstance(typ, list) and ct not in OURS and typ:
                assert value in typ, (nid, name, value)
    for nid, node in api.items():
        declared = {n: t for n, t, _ in W.input_order(classes[nid][0])}
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                src, out = value
                rtype = classes[src][1][out]
                assert W._types_match(rtype, declared[name]), f"node {nid}.{name}: {rtype} into {declared[name]}"


def test_the_blender_worker_finds_the_shipped_api_workflows():
    from synesthesia.nodes.worker import shipped_workflow

    for name in ("video_to_foley", "video_to_foley_text", "sound_to_video", "sound_to_video_text"):
        assert shipped_workflow(f"{name}_api.json") == WF / "api" / f"{name}_api.json"
        assert shipped_workflow(f"{name}_api.json").is_file()
    assert shipped_workflow("nope_api.json") == WF / "api" / "nope_api.json"  # not found: a path, no recursion


def test_job_inputs_table_names_inputs_the_workflows_have():
    """workflows/api/job_inputs.json (the worker's and the Blender ComfyUI backend's one table): every
    [node class, input] it sets exists in that kind's shipped API workflows, and both hosts read it."""
    from synesthesia.blender_addon import comfy_client
    from synesthesia.nodes import worker

    table = json.loads((WF / "api" / "job_inputs.json").read_text())
    for kind, stem in (("foley", "video_to_foley"), ("s2v", "sound_to_video")):
        have = set()
        for path in (WF / "api").glob(f"{stem}*_api.json"):
            have |= {(n["class_type"], k) for n in json.loads(path.read_text()).values() for k in n["inputs"]}
        for key, targets in table[kind].items():
            assert any(tuple(t) in have for t in targets), (kind, key)
            assert all(tuple(t) in have or t[0] == "SynesthesiaGroundObjects" for t in targets), (kind, key, targets)
    assert worker.FOLEY_SETTINGS == comfy_client.FOLEY_INPUTS
    assert comfy_client.S2V_INPUTS["fps"] == (("SynesthesiaLatentWalk", "fps"),)
