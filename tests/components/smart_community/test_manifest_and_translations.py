"""What hassfest and the HACS action would check, since neither can run here.

The rules come from their sources (home-assistant/core script/hassfest/{manifest,translations,
quality_scale}.py and hacs/integration custom_components/hacs/utils/validate.py); where Home
Assistant's installed package holds the answer itself (quality scale rules, brand image names,
languages), the test reads it from there. Beyond them, the code is cross-checked against the
strings: every translation key the code uses exists, and every string is used.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import import_module, metadata
import json
from pathlib import Path
import re
import string
from types import ModuleType
from typing import Any

from awesomeversion import AwesomeVersion, AwesomeVersionStrategy
from homeassistant import const as ha_const
import homeassistant.components as ha_components
from homeassistant.components.brands.const import ALLOWED_IMAGES
from homeassistant.components.event import ATTR_EVENT_TYPES, EventEntity
from homeassistant.config_entries import ConfigFlow
from homeassistant.const import ATTR_FRIENDLY_NAME
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.generated.languages import LANGUAGES
from homeassistant.helpers import config_validation as cv, entity_platform, selector
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.translation import async_get_translations
from homeassistant.loader import async_get_custom_components, async_get_integration
from homeassistant.util import dt as dt_util
from homeassistant.util.yaml import load_yaml_dict
from PIL import Image
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
import yaml

from custom_components.smart_community import PLATFORMS
from custom_components.smart_community.const import DOMAIN
from custom_components.smart_community.protocol import Operation

from .fake_bridge import FakeBridge, FakeGrid, dr_event

REPOSITORY = Path(__file__).resolve().parents[3]
INTEGRATION = REPOSITORY / "custom_components" / DOMAIN
PACKAGE = f"custom_components.{DOMAIN}"
# The protocol package imports nothing of Home Assistant and translates nothing.
CODE = sorted(path for path in INTEGRATION.glob("*.py"))

MANIFEST = json.loads((INTEGRATION / "manifest.json").read_text(encoding="utf-8"))
HACS = json.loads((REPOSITORY / "hacs.json").read_text(encoding="utf-8"))
TRANSLATIONS = {
    path.stem: json.loads(path.read_text(encoding="utf-8"))
    for path in sorted((INTEGRATION / "translations").glob("*.json"))
}
EN = TRANSLATIONS["en"]
ICONS = json.loads((INTEGRATION / "icons.json").read_text(encoding="utf-8"))
SERVICES_FILE = INTEGRATION / "services.yaml"

# Home Assistant supports local brand images of custom integrations from this version on.
BRAND_SUPPORT = AwesomeVersion("2026.3.0")


# Manifest: script/hassfest/manifest.py, and HACS's INTEGRATION_MANIFEST_JSON_SCHEMA.

MANIFEST_KEYS = {
    "domain",
    "name",
    "codeowners",
    "config_flow",
    "dependencies",
    "documentation",
    "integration_type",
    "iot_class",
    "issue_tracker",
    "requirements",
    "version",
}
INTEGRATION_TYPES = {"device", "entity", "hardware", "helper", "hub", "service", "system"}
IOT_CLASSES = {
    "assumed_state",
    "calculated",
    "cloud_polling",
    "cloud_push",
    "local_polling",
    "local_push",
}
VERSION_STRATEGIES = [
    AwesomeVersionStrategy.CALVER,
    AwesomeVersionStrategy.SEMVER,
    AwesomeVersionStrategy.SIMPLEVER,
    AwesomeVersionStrategy.BUILDVER,
    AwesomeVersionStrategy.PEP440,
]
PINNED = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^=<>!~;\s]+)$")


def test_manifest_keys_present_and_sorted() -> None:
    """The keys hassfest and HACS need, in hassfest's order: domain, name, then alphabetical."""
    assert set(MANIFEST) >= MANIFEST_KEYS
    keys = list(MANIFEST)
    assert keys[:2] == ["domain", "name"]
    assert keys[2:] == sorted(keys[2:])
    assert MANIFEST["domain"] == INTEGRATION.name


def test_manifest_values() -> None:
    """Each manifest value is of the kind hassfest's schema accepts."""
    assert MANIFEST["codeowners"]
    assert all(owner.startswith("@") for owner in MANIFEST["codeowners"])
    assert MANIFEST["config_flow"] is (INTEGRATION / "config_flow.py").is_file()
    assert all(isinstance(dependency, str) for dependency in MANIFEST["dependencies"])
    for key in ("documentation", "issue_tracker"):
        assert cv.url(MANIFEST[key]).startswith("https://"), key
    assert MANIFEST["integration_type"] in INTEGRATION_TYPES
    assert MANIFEST["iot_class"] in IOT_CLASSES
    AwesomeVersion(MANIFEST["version"], ensure_strategy=VERSION_STRATEGIES)


@pytest.mark.parametrize("requirement", MANIFEST["requirements"])
def test_requirements_pinned(requirement: str) -> None:
    """Requirements are pinned exactly, to the version the tests run with."""
    match = PINNED.match(requirement)
    assert match, f"{requirement} is not pinned with =="
    assert metadata.version(match["name"]) == match["version"]


async def test_home_assistant_accepts_the_integration(hass: HomeAssistant) -> None:
    """Home Assistant's loader takes it as a custom integration with a version and a brand."""
    integration = await async_get_integration(hass, DOMAIN)
    assert not integration.is_built_in
    assert integration.version == AwesomeVersion(MANIFEST["version"])
    assert integration.has_branding
    assert integration.dependencies == MANIFEST["dependencies"]


# HACS: hacs.json (HACS_MANIFEST_JSON_SCHEMA) and the repository layout HACS expects.

HACS_KEYS: dict[str, type] = {
    "content_in_root": bool,
    "country": object,  # a code or a list of codes, checked below
    "filename": str,
    "hacs": str,
    "hide_default_branch": bool,
    "homeassistant": str,
    "persistent_directory": str,
    "render_readme": bool,
    "zip_release": bool,
    "name": str,
}


def test_hacs_json_keys_and_types() -> None:
    """Only keys HACS knows, each of the type it wants, the name required."""
    assert set(HACS) <= set(HACS_KEYS), set(HACS) - set(HACS_KEYS)
    assert HACS["name"] == MANIFEST["name"]
    for key, value in HACS.items():
        assert isinstance(value, HACS_KEYS[key]), key
    if "country" in HACS:
        countries = HACS["country"] if isinstance(HACS["country"], list) else [HACS["country"]]
        assert all(re.fullmatch("[A-Z]{2}", country) for country in countries)
    if HACS.get("zip_release"):
        assert HACS.get("filename"), "zip_release needs filename"


def test_hacs_minimum_home_assistant() -> None:
    """The minimum is a version this Home Assistant meets, and late enough for the brand icon."""
    minimum = AwesomeVersion(HACS["homeassistant"], ensure_strategy=[AwesomeVersionStrategy.CALVER])
    assert minimum <= AwesomeVersion(ha_const.__version__)
    assert minimum >= BRAND_SUPPORT


def test_repository_layout_for_hacs() -> None:
    """One integration under custom_components, and a README HACS can render."""
    assert [
        path.name
        for path in (REPOSITORY / "custom_components").iterdir()
        if path.is_dir() and not path.name.startswith("__")
    ] == [DOMAIN]
    assert (REPOSITORY / "README.md").is_file()


# Brand images: what homeassistant.components.brands serves, sized as the brands repository
# specifies (icons 256 and 512 pixels square; logos 128 to 256, hDPI 256 to 512, short side).


def test_brand_images() -> None:
    """Only names Home Assistant serves, an icon among them, each a trimmed, transparent PNG."""
    images = sorted((INTEGRATION / "brand").iterdir())
    names = {path.name for path in images}
    assert names <= ALLOWED_IMAGES, names - ALLOWED_IMAGES
    assert "icon.png" in names
    for path in images:
        with Image.open(path) as image:
            assert image.format == "PNG", path.name
            assert image.mode == "RGBA", path.name
            hidpi = "@2x" in path.name
            if "icon" in path.name:
                assert image.size == ((512, 512) if hidpi else (256, 256)), path.name
            else:
                assert (256 if hidpi else 128) <= min(image.size) <= (512 if hidpi else 256)
            alpha = image.getchannel("A")
            assert alpha.getextrema()[0] == 0, f"{path.name} has no transparency"
            assert alpha.getbbox() == (0, 0, *image.size), f"{path.name} is not trimmed"


# Translations: script/hassfest/translations.py, for every language, plus the code's own keys.

RE_TRANSLATION_KEY = re.compile(r"^(?!.+[_-]{2})(?![_-])[a-z0-9-_]+(?<![_-])$")
RE_URL = re.compile(
    r"(((ftp|ftps|scp|http|https|mqtt|mqtts|socket|socks5):\/\/|www\.)"
    r"[a-z0-9]+([\-\.]{1}[a-z0-9]+)*\.[a-z]{2,5}(:[0-9]{1,5})?(\/.*)?)",
    re.IGNORECASE,
)
RE_PLACEHOLDER_IN_SINGLE_QUOTES = re.compile(r"'{\w+}'")


def _strings(
    tree: dict[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every string of a translation tree, with its path."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _strings(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def _placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


@pytest.mark.parametrize("language", sorted(TRANSLATIONS))
def test_translation_complete(language: str) -> None:
    """Every language has exactly English's strings, with the same placeholders in each."""
    assert language in LANGUAGES
    english = dict(_strings(EN))
    translated = dict(_strings(TRANSLATIONS[language]))
    assert set(translated) == set(english), set(translated) ^ set(english)
    for path, text in translated.items():
        assert _placeholders(text) == _placeholders(english[path]), "/".join(path)


@pytest.mark.parametrize("language", sorted(TRANSLATIONS))
def test_translation_strings_valid(language: str) -> None:
    """Every string passes hassfest's value rules: no HTML, URLs or stray spaces."""
    for path, text in _strings(TRANSLATIONS[language]):
        where = f"{language}: {'/'.join(path)}"
        assert text, where
        cv.string_with_no_html(text)
        assert text == text.strip(), where
        assert not RE_URL.search(text), f"{where}: use a placeholder for URLs"
        assert not RE_PLACEHOLDER_IN_SINGLE_QUOTES.search(text), where
        assert all(field.isidentifier() for field in _placeholders(text)), where
        # Entity states and attribute names take no placeholders.
        if path[0] == "entity" and ("state" in path or "state_attributes" in path):
            assert not _placeholders(text), where


def test_translation_keys_valid() -> None:
    """Keys that name entities, states and attributes follow hassfest's key pattern."""
    for platform, entities in EN.get("entity", {}).items():
        assert platform in PLATFORMS, platform
        for key, entity in entities.items():
            assert RE_TRANSLATION_KEY.match(key), key
            for section in ("state", "state_attributes"):
                for name in entity.get(section, {}):
                    assert RE_TRANSLATION_KEY.match(name), f"{key}: {name}"
    flows = [EN["config"], *EN.get("config_subentries", {}).values()]
    for step_id, step in (item for flow in flows for item in flow["step"].items()):
        assert set(step.get("data_description", {})) <= set(step.get("data", {})), step_id


async def test_home_assistant_loads_every_language(hass: HomeAssistant) -> None:
    """Home Assistant reads each translation file of the custom integration."""
    # The loader needs to know the integration before it looks for its translations.
    await async_get_custom_components(hass)
    for language, tree in TRANSLATIONS.items():
        for category in ("entity", "config_subentries"):
            loaded = await async_get_translations(hass, language, category, {DOMAIN})
            expected = {
                f"component.{DOMAIN}.{category}.{'.'.join(path[1:])}": text
                for path, text in _strings(tree)
                if path[0] == category
            }
            assert loaded == expected, f"{language}: {category}"


# The code against the strings.


def _platform_modules() -> dict[str, ModuleType]:
    return {str(platform): import_module(f"{PACKAGE}.{platform}") for platform in PLATFORMS}


def _descriptions(module: ModuleType) -> list[EntityDescription]:
    """The entity descriptions a platform module declares at its top level."""
    found: list[EntityDescription] = []
    for value in vars(module).values():
        if isinstance(value, EntityDescription):
            found.append(value)
        elif isinstance(value, tuple | list):
            found.extend(item for item in value if isinstance(item, EntityDescription))
    return found


def test_entity_translation_keys() -> None:
    """Every entity description has a translated name, and every translated entity exists."""
    for platform, module in _platform_modules().items():
        descriptions = _descriptions(module)
        assert descriptions, platform
        keys = {description.translation_key for description in descriptions}
        assert None not in keys, f"{platform}: an entity without a translation key"
        translated = EN.get("entity", {}).get(platform, {})
        assert keys == set(translated), f"{platform}: {keys ^ set(translated)}"
        for key in keys:
            assert translated[key]["name"], key
    assert set(EN.get("entity", {})) <= {str(platform) for platform in PLATFORMS}


async def test_entity_attributes_translated(
    hass: HomeAssistant, init_integration: MockConfigEntry, bridge: FakeBridge, grid: FakeGrid
) -> None:
    """Every extra attribute of every running entity has a translated name.

    An event entity's attributes are its event type and the data it fires with, so one
    demand-response event is announced first.
    """
    event = grid.sign(dr_event("peak", start=dt_util.utcnow()), operation=Operation.CREATE)
    await bridge.wait_for_ack(await bridge.publish(event, Operation.CREATE))
    entities = [
        entity
        for platform in entity_platform.async_get_platforms(hass, DOMAIN)
        for entity in platform.entities.values()
    ]
    assert entities
    for entity in entities:
        assert entity.platform is not None
        translations = EN["entity"][entity.platform.domain][entity.translation_key]
        if isinstance(entity, EventEntity):
            state = hass.states.get(entity.entity_id)
            assert state is not None
            attributes = set(state.attributes) - {ATTR_EVENT_TYPES, ATTR_FRIENDLY_NAME}
        else:
            attributes = set(entity.extra_state_attributes or {})
        assert attributes == set(translations.get("state_attributes", {})), entity.entity_id


@dataclass(frozen=True, kw_only=True)
class TranslationUse:
    """A translation key the code passes to Home Assistant, and with which placeholders."""

    module: str
    line: int
    callee: str
    key: str
    placeholders: frozenset[str] | None  # None: not a literal dict, so not known statically


def _constant(node: ast.expr | None, module: ModuleType) -> Any:
    """The value of a literal or of a module-level name; None when it is neither."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return vars(module).get(node.id)
    return None


def _callee(node: ast.Call, module: ModuleType) -> tuple[str, Any]:
    """The called name and, for a module-level name, what it refers to."""
    if isinstance(node.func, ast.Name):
        return node.func.id, vars(module).get(node.func.id)
    if isinstance(node.func, ast.Attribute):
        return node.func.attr, None
    return "", None


def _module(path: Path) -> ModuleType:
    return import_module(PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}")


def _placeholder_keys(node: ast.expr | None, module: ModuleType) -> frozenset[str] | None:
    """The keys of a translation_placeholders argument; None when they are not literal."""
    if node is None:
        return frozenset()
    if isinstance(node, ast.Dict):
        return frozenset(_constant(key, module) for key in node.keys)
    return None


def _translation_uses() -> list[TranslationUse]:
    """Every call in the integration's code that passes a translation_key."""
    uses: list[TranslationUse] = []
    for path in CODE:
        module = _module(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            keywords = {keyword.arg: keyword.value for keyword in node.keywords}
            if "translation_key" not in keywords:
                continue
            key = _constant(keywords["translation_key"], module)
            assert isinstance(key, str), f"{path.name}:{node.lineno}: translation key not literal"
            uses.append(
                TranslationUse(
                    module=path.name,
                    line=node.lineno,
                    callee=_callee(node, module)[0],
                    key=key,
                    placeholders=_placeholder_keys(
                        keywords.get("translation_placeholders"), module
                    ),
                )
            )
    return uses


def _exception_uses() -> list[TranslationUse]:
    """The translation keys passed to Home Assistant's exceptions."""
    uses = []
    for use in _translation_uses():
        target = vars(_module(INTEGRATION / use.module)).get(use.callee)
        if isinstance(target, type) and issubclass(target, HomeAssistantError):
            uses.append(use)
    return uses


def test_every_translation_key_in_the_code_is_classified() -> None:
    """Each translation_key the code passes is an entity's, a device's or an exception's.

    A new kind needs its check here before it can be used.
    """
    exceptions = {(use.module, use.line) for use in _exception_uses()}
    for use in _translation_uses():
        kind = (
            "exception"
            if (use.module, use.line) in exceptions
            else "device"
            if use.callee in {"DeviceInfo", "async_get_or_create"}
            else "entity"
            if use.callee.endswith("EntityDescription")
            else "issue"
            if use.callee == "async_create_issue"
            else None
        )
        assert kind, f"{use.module}:{use.line}: {use.callee}(translation_key={use.key!r})"


def test_exception_translations() -> None:
    """Every exception the code raises with a translation key has its message, and no other."""
    uses = _exception_uses()
    messages = EN.get("exceptions", {})
    assert {use.key for use in uses} == set(messages)
    for use in uses:
        expected = _placeholders(messages[use.key]["message"])
        assert use.placeholders == expected, f"{use.module}:{use.line}: {use.key}"


def test_issue_translations() -> None:
    """Every repair issue the code raises is translated, its strings use exactly the
    placeholders it passes, and a fixable one has the steps of its fix flow."""
    uses = [use for use in _translation_uses() if use.callee == "async_create_issue"]
    issues = EN.get("issues", {})
    assert {use.key for use in uses} == set(issues)
    for use in uses:
        strings = dict(_strings(issues[use.key]))
        assert "title" in issues[use.key], use.key
        assert use.placeholders == {
            field for text in strings.values() for field in _placeholders(text)
        }, use.key
        fixable = _fixable(use)
        assert ("fix_flow" in issues[use.key]) is fixable, use.key
        assert fixable or issues[use.key]["description"], use.key


def _fixable(use: TranslationUse) -> bool:
    """Whether the async_create_issue call at ``use`` says is_fixable=True."""
    tree = ast.parse((INTEGRATION / use.module).read_text(encoding="utf-8"))
    call = next(
        node for node in ast.walk(tree) if isinstance(node, ast.Call) and node.lineno == use.line
    )
    flag = next(keyword.value for keyword in call.keywords if keyword.arg == "is_fixable")
    assert isinstance(flag, ast.Constant), f"{use.module}:{use.line}: is_fixable not literal"
    return flag.value is True


def test_device_translations() -> None:
    """Every device name the code asks for is translated, with the placeholders it passes."""
    uses = [
        use for use in _translation_uses() if use.callee in {"DeviceInfo", "async_get_or_create"}
    ]
    names = EN.get("device", {})
    assert {use.key for use in uses} == set(names)
    for use in uses:
        assert use.placeholders == _placeholders(names[use.key]["name"]), use.key


@dataclass(kw_only=True)
class FlowStrings:
    """The strings a flow (config, options or subentry flow) refers to."""

    steps: dict[str, frozenset[str] | None]  # step id: its description's placeholders
    fields: set[str]
    errors: set[str]
    aborts: set[str]
    menus: dict[str, set[str]]  # step id: its menu options


def _is_errors_entry(node: ast.AST) -> bool:
    """Whether the node assigns to errors[...], the dict a form shows its errors from."""
    return (
        isinstance(node, ast.Assign)
        and isinstance(target := node.targets[0], ast.Subscript)
        and isinstance(target.value, ast.Name)
        and target.value.id == "errors"
    )


def _flow_nodes(flow_class: type) -> tuple[list[ast.AST], ModuleType]:
    """A flow class's definition and the module-level helpers and constants it refers to."""
    path = INTEGRATION / "config_flow.py"
    module = _module(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            top[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            top.update({t.id: node for t in targets if isinstance(t, ast.Name)})
    pending, seen = [flow_class.__name__], set()
    while pending:
        name = pending.pop()
        if name in seen or name not in top:
            continue
        seen.add(name)
        # Another flow class is its own flow, not a helper of this one.
        pending.extend(
            node.id
            for node in ast.walk(top[name])
            if isinstance(node, ast.Name) and not isinstance(vars(module).get(node.id), type)
        )
    return [top[name] for name in seen], module


def _field_name(node: ast.expr, module: ModuleType) -> Any:
    """A form field's key: a literal, a module-level name, or a member of one (an enum's)."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return getattr(vars(module).get(node.value.id), node.attr, None)
    return _constant(node, module)


def _config_flow_strings(flow_class: type) -> FlowStrings:
    roots, module = _flow_nodes(flow_class)
    found = FlowStrings(steps={}, fields=set(), errors=set(), aborts=set(), menus={})
    for node in (node for root in roots for node in ast.walk(root)):
        if _is_errors_entry(node):
            assert isinstance(node, ast.Assign)
            if not isinstance(node.value, ast.Call):  # a helper's result: its returns count below
                found.errors.add(_constant(node.value, module))
        if isinstance(node, ast.FunctionDef) and node.name.endswith("error_key"):
            found.errors.update(
                _constant(ret.value, module)
                for ret in ast.walk(node)
                if isinstance(ret, ast.Return) and ret.value is not None
            )
        if isinstance(node, ast.Call):
            _call_strings(node, module, found)
    return found


def _call_strings(node: ast.Call, module: ModuleType, found: FlowStrings) -> None:
    """The strings one call of a flow refers to: a step, an abort reason, a form field."""
    name = _callee(node, module)[0]
    keywords = {keyword.arg: keyword.value for keyword in node.keywords}
    if name in {"async_show_form", "async_show_menu"}:
        step_id = _constant(keywords["step_id"], module)
        found.steps[step_id] = _placeholder_keys(keywords.get("description_placeholders"), module)
        if name == "async_show_menu":
            options = keywords["menu_options"]
            assert isinstance(options, ast.List), step_id
            found.menus[step_id] = {_constant(item, module) for item in options.elts}
    elif name == "async_abort":
        found.aborts.add(_constant(keywords["reason"], module))
    elif name == "_abort_if_unique_id_configured":
        found.aborts.add("already_configured")
    elif name == "_abort_if_unique_id_mismatch":
        found.aborts.add(_constant(keywords["reason"], module))
    elif name == "async_update_reload_and_abort":
        found.aborts.update({"reauth_successful", "reconfigure_successful"})
    elif name == "async_set_unique_id":
        found.aborts.add("already_in_progress")
    elif name in {"Required", "Optional"}:
        found.fields.add(_field_name(node.args[0], module))


def _flows() -> list[tuple[type, dict[str, Any]]]:
    """The config flow, the options flow and each subentry flow, with the strings each shows."""
    config_flow = _module(INTEGRATION / "config_flow.py")
    flow_class = next(
        value
        for value in vars(config_flow).values()
        if isinstance(value, type)
        and issubclass(value, ConfigFlow)
        and value.__module__ == config_flow.__name__
    )
    entry = MockConfigEntry(domain=DOMAIN)
    options_flow = type(flow_class.async_get_options_flow(entry))
    flows = [(flow_class, EN["config"]), (options_flow, EN["options"])]
    subentry_types = flow_class.async_get_supported_subentry_types(entry)
    assert set(subentry_types) == set(EN.get("config_subentries", {}))
    for subentry_type, subentry_flow in subentry_types.items():
        strings = EN["config_subentries"][subentry_type]
        # The add button and the kind of subentry, as the integration's page shows them.
        assert strings["initiate_flow"]["user"], subentry_type
        assert strings["entry_type"], subentry_type
        flows.append((subentry_flow, strings))
    return flows


@pytest.mark.parametrize(("flow_class", "config"), _flows())
def test_config_flow_translations(flow_class: type, config: dict[str, Any]) -> None:
    """Every step, field, error, abort reason and menu option of each flow has its string."""
    flow = _config_flow_strings(flow_class)
    assert set(flow.steps) == set(config["step"])
    for step_id, placeholders in flow.steps.items():
        step = config["step"][step_id]
        texts = " ".join(step.get(key, "") for key in ("title", "description"))
        assert placeholders == _placeholders(texts), step_id
        assert set(step.get("menu_options", {})) == flow.menus.get(step_id, set()), step_id
    assert flow.fields == {
        field for step in config["step"].values() for field in step.get("data", {})
    }
    assert flow.errors == set(config.get("error", {}))
    assert flow.aborts == set(config.get("abort", {}))


# Icons: icons.json against the translations.

RE_ICON = re.compile(r"^mdi:[-a-z0-9]+$")


def test_icons_match_translations() -> None:
    """Icons exist only for translated keys, are MDI names, and every entity has one."""
    for platform, entities in ICONS.get("entity", {}).items():
        translated = EN["entity"][platform]
        assert set(entities) <= set(translated), platform
        for key, icon in entities.items():
            assert RE_ICON.match(icon["default"]), key
            for state, state_icon in icon.get("state", {}).items():
                assert RE_ICON.match(state_icon), f"{key}: {state}"
                if platform == "binary_sensor":
                    assert state in {"on", "off"}, key
    for platform, module in _platform_modules().items():
        for description in _descriptions(module):
            # An entity with a device class takes that class's icon.
            if description.device_class is None:
                assert description.translation_key in ICONS["entity"].get(platform, {}), (
                    description.key
                )
    assert set(ICONS.get("services", {})) == set(_services())


# Actions: services.yaml, its selectors and its strings.


def _services() -> dict[str, Any]:
    return load_yaml_dict(SERVICES_FILE) if SERVICES_FILE.is_file() else {}


def test_services_described() -> None:
    """Every action's fields have selectors and strings; no strings for actions that are gone."""
    services = _services()
    translated = EN.get("services", {})
    assert set(translated) == set(services)
    for service, description in services.items():
        assert translated[service]["name"], service
        assert translated[service]["description"], service
        fields = (description or {}).get("fields", {})
        assert set(translated[service].get("fields", {})) == set(fields), service
        for field, spec in fields.items():
            selector.validate_selector(spec["selector"])
            assert translated[service]["fields"][field]["name"], f"{service}.{field}"
            assert translated[service]["fields"][field]["description"], f"{service}.{field}"


# Quality scale: rule names are Home Assistant's own. hassfest keeps them in
# script/hassfest/quality_scale.py, which the package does not ship; a platinum integration has
# to list every rule, so the platinum integrations of the installed package list them all.


def _home_assistant_rules() -> set[str]:
    components = Path(ha_components.__file__).parent
    rule_sets = set()
    for manifest_file in components.glob("*/manifest.json"):
        if json.loads(manifest_file.read_text(encoding="utf-8")).get("quality_scale") != "platinum":
            continue
        scale = yaml.safe_load((manifest_file.parent / "quality_scale.yaml").read_text())
        rule_sets.add(frozenset(scale["rules"]))
    assert len(rule_sets) == 1, "platinum integrations disagree on the rules"
    return set(rule_sets.pop())


QUALITY_SCALE = yaml.safe_load((INTEGRATION / "quality_scale.yaml").read_text(encoding="utf-8"))


def test_quality_scale_rules_are_home_assistants() -> None:
    """Exactly Home Assistant's rules, each done, todo or exempt, every exemption explained."""
    rules = QUALITY_SCALE["rules"]
    assert set(rules) == _home_assistant_rules()
    for rule, value in rules.items():
        if isinstance(value, dict):
            assert set(value) == {"status", "comment"}, rule
            assert value["comment"].strip(), rule
            status = value["status"]
        else:
            status = value
        assert status in {"done", "todo", "exempt"}, rule
        assert status != "exempt" or isinstance(value, dict), f"{rule}: exempt needs a comment"


def _status(rule: str) -> str:
    value = QUALITY_SCALE["rules"][rule]
    return value["status"] if isinstance(value, dict) else value


def test_quality_scale_claims_hold() -> None:
    """The rules marked done that a file shows are indeed done."""
    if _status("brands") == "done":
        assert (INTEGRATION / "brand" / "icon.png").is_file()
    if _status("config-flow") == "done":
        assert MANIFEST["config_flow"] is True
    if _status("icon-translations") == "done":
        assert ICONS.get("entity")
    if _status("exception-translations") == "done":
        assert EN.get("exceptions")
    if _status("action-setup") == "exempt":
        assert not SERVICES_FILE.exists()
    else:
        assert _services()
    if _status("diagnostics") == "done":
        assert (INTEGRATION / "diagnostics.py").is_file()
    if _status("repair-issues") == "done":
        assert EN.get("issues")
        assert (INTEGRATION / "repairs.py").is_file()
