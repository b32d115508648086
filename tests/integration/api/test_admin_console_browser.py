"""The /admin console end to end in a real browser: headless Chromium from Debian (apt-get
install chromium chromium-driver; .ci/run installs them) driven by Selenium, against the
real gateway served over HTTP and the real gRPC recommender of ``service_stack``."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import uvicorn
import yaml
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from api.app import create_app
from recommender._generated.hotfeed.v1 import recommender_pb2 as pb
from recommender._generated.hotfeed.v1 import recommender_pb2_grpc as pb_grpc
from recommender.profiles import CategoryBoost, Knn, load_default_profile, read_item_fields
from recommender.segments import DeclaredPreferences
from recommender.stores.profiles import ProfileStore
from recommender.stores.segments import RedisSegmentStore
from tests.integration.api.conftest import ADMIN_NAME, ADMIN_TOKEN, gateway_settings

_APT_HINT = "install the browser with `apt-get update && apt-get install -y chromium chromium-driver` (.ci/run does)"
# Waits for the page and the recommender's profile poll; generous for a busy 2-core box.
_WAIT_S = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gateway_url(service_stack, grpc_server: str) -> Iterator[str]:
    """The real gateway, served by uvicorn over HTTP in this process, in front of the recommender."""
    settings = gateway_settings(service_stack.settings, redis=service_stack.settings.redis, grpc_target=grpc_server)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + _WAIT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail(f"the gateway did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail(f"chromium or chromedriver is not on PATH; {_APT_HINT}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    yield chrome
    chrome.quit()


def _text(browser: webdriver.Chrome, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def _wait_text(browser: webdriver.Chrome, element_id: str, needle: str) -> str:
    WebDriverWait(browser, _WAIT_S).until(lambda b: needle in _text(b, element_id),
                                          f"#{element_id} never said {needle!r}")
    return _text(browser, element_id)


def _wait(browser: webdriver.Chrome, condition, message: str):
    """Return the first truthy value of ``condition(browser)``; an element replaced meanwhile (the
    form is rebuilt from the YAML) is looked up again."""
    return WebDriverWait(browser, _WAIT_S, ignored_exceptions=(StaleElementReferenceException,)).until(condition, message)


def _type_yaml(browser: webdriver.Chrome, text: str) -> None:
    box = browser.find_element(By.ID, "yaml")
    box.clear()
    box.send_keys(text)


def _yaml_view(browser: webdriver.Chrome) -> dict:
    """Return the profile data of the YAML view (hidden or not)."""
    return yaml.safe_load(browser.find_element(By.ID, "yaml").get_attribute("value"))


def _type_in_form(browser: webdriver.Chrome, loc: str, text: str) -> None:
    box = browser.find_element(By.CSS_SELECTOR, f'#form input[data-loc="{loc}"]')
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(text)


def _field_problem(browser: webdriver.Chrome, loc: str) -> str:
    """Return the problem shown next to the form field at ``loc``, in the same row as its input."""
    row = browser.find_element(By.CSS_SELECTOR, f'#form div.field[data-field="{loc}"]')
    assert row.find_elements(By.CSS_SELECTOR, f'input[data-loc="{loc}"]'), f"no input for {loc} in its row"
    return row.find_element(By.CSS_SELECTOR, f'.field-problem[data-problem-for="{loc}"]').text


def _sign_in(browser: webdriver.Chrome, gateway_url: str) -> None:
    """Open the console and sign in as ``ADMIN_NAME``; returns once the page has loaded the default profile."""
    browser.get(f"{gateway_url}/admin")
    browser.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
    browser.find_element(By.ID, "signin").click()
    _wait_text(browser, "whoami", f"signed in as {ADMIN_NAME}")


def _start_new_profile(browser: webdriver.Chrome, gateway_url: str, name: str) -> None:
    """Sign in to the console, start a new profile (the default's copy, in the form) and name it."""
    _sign_in(browser, gateway_url)
    browser.find_element(By.ID, "new").click()
    _wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, '#form input[data-loc="name"]').get_attribute("value")
          == "CHANGE-ME", "the form never showed the new profile")
    browser.find_element(By.ID, "name").send_keys(name)
    _wait(browser, lambda b: _yaml_view(b)["name"] == name, "the YAML never took the name")


def _make_live(browser: webdriver.Chrome, version: str, action: str, comment: str) -> None:
    browser.find_element(By.ID, "publish-comment").send_keys(comment)
    browser.find_element(By.CSS_SELECTOR, f'tr[data-version="{version}"] button.{action}').click()
    alert = WebDriverWait(browser, _WAIT_S).until(expected_conditions.alert_is_present())
    assert version in alert.text
    alert.accept()
    _wait_text(browser, "message", f"version {version} of")


def _open_profile(browser: webdriver.Chrome, name: str) -> None:
    """Click profile ``name`` in the list once sign-in has loaded the default one (the list is
    redrawn while the page loads, so a click may land on a replaced element: retried)."""
    WebDriverWait(browser, _WAIT_S).until(
        lambda b: b.find_element(By.ID, "name").get_attribute("value") == "default"
        and b.find_elements(By.CSS_SELECTOR, "#history tr"), "the default profile never loaded")

    def clicked(b: webdriver.Chrome) -> bool:
        for li in b.find_elements(By.CSS_SELECTOR, "#profiles li"):
            if li.text.split("\n")[0] == name:
                li.click()
                break
        return b.find_element(By.ID, "name").get_attribute("value") == name

    _wait(browser, clicked, f"profile {name} never opened")


def _served_version(grpc_server: str, name: str, expected: str) -> str:
    """Return the profile version HomeFeed reports under ``name`` once it is ``expected``, or
    the last one seen when the recommender's poll never brings it."""
    stub = pb_grpc.RecommenderStub(grpc.insecure_channel(grpc_server))
    seen, deadline = "", time.monotonic() + _WAIT_S
    while seen != expected and time.monotonic() < deadline:
        try:
            seen = stub.HomeFeed(pb.HomeFeedRequest(session_id="console-e2e", page_size=3, profile=name),
                                 timeout=10).profile_version
        except grpc.RpcError as exc:
            # NOT_FOUND until the recommender's next poll sees a newly published profile.
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
        if seen != expected:
            time.sleep(0.1)
    return seen


def test_a_product_manager_edits_validates_publishes_and_rolls_back(
    browser: webdriver.Chrome, gateway_url: str, grpc_server: str, service_stack, tmp_path: Path
) -> None:
    name = f"console-e2e-{uuid.uuid4().hex[:6]}"
    fields = read_item_fields(service_stack.settings.paths.mappings_dir)
    store = ProfileStore(service_stack.settings.redis, fields=fields)
    knn = next(i for i, c in enumerate(load_default_profile(fields=fields).components) if isinstance(c, Knn))
    weight = f"components[{knn}].weight"
    segments = RedisSegmentStore(service_stack.settings.redis, client=store.client)
    user = f"console-e2e-user-{uuid.uuid4().hex[:6]}"
    try:
        # A new profile starts from the default, shown in the form; naming it names the YAML too.
        _start_new_profile(browser, gateway_url, name)
        assert browser.find_element(By.ID, "form").is_displayed() and not browser.find_element(By.ID, "yaml").is_displayed()

        # The PM lowers the kNN weight in the form: the YAML view follows.
        _type_in_form(browser, weight, "1")
        _wait(browser, lambda b: _yaml_view(b)["components"][knn]["weight"] == 1, "the YAML never showed the form's weight")
        # The bounds come from the schema: a hint beside the input, and the server's message next to the field.
        hint = browser.find_element(By.CSS_SELECTOR, f'#form div.field[data-field="{weight}"] .hint').text
        assert hint == "0 ≤ x", hint
        _type_in_form(browser, weight, "-1")
        _wait(browser, lambda b: "greater than or equal to 0" in _field_problem(b, weight), f"no problem next to {weight}")
        assert "out-of-bounds" in browser.find_element(By.CSS_SELECTOR, f'input[data-loc="{weight}"]').get_attribute("class")
        assert weight in _text(browser, "problems")
        _type_in_form(browser, weight, "0.5")
        _wait(browser, lambda b: _text(b, "problems") == "valid", "the fixed weight never validated")
        assert _field_problem(browser, weight) == "" and _yaml_view(browser)["components"][knn]["weight"] == 0.5

        browser.find_element(By.ID, "save").click()
        first = re.search(r"saved draft ([0-9a-f]{16})", _wait_text(browser, "message", "saved draft")).group(1)
        assert store.get_version(name, first).profile.components[knn].weight == 0.5
        assert browser.find_element(By.CSS_SELECTOR, f'tr[data-version="{first}"]').get_attribute("data-status") == "draft"
        _make_live(browser, first, "publish", "half the knn weight for the sale")
        assert _served_version(grpc_server, name, first) == first

        # A power user edits the YAML view; the form follows when shown again.
        browser.find_element(By.ID, "tab-yaml").click()
        more = _yaml_view(browser)
        more["components"][knn]["weight"] = -1.0
        _type_yaml(browser, yaml.safe_dump(more, sort_keys=False))
        problems = _wait_text(browser, "problems", "greater than or equal to 0")
        assert weight in problems, problems
        more["components"][knn]["weight"] = 3.0
        _type_yaml(browser, yaml.safe_dump(more, sort_keys=False))
        _wait(browser, lambda b: _text(b, "problems") == "valid", "the fixed YAML never validated")
        browser.find_element(By.ID, "tab-form").click()
        _wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, f'input[data-loc="{weight}"]').get_attribute("value") == "3",
              "the form never showed the YAML's weight")
        browser.find_element(By.ID, "save").click()
        second = re.search(r"saved draft ([0-9a-f]{16})",
                           _wait_text(browser, "message", "saved draft")).group(1)
        assert second != first
        # Before publishing, the PM previews live (first) against the draft (second) for a user serving knows.
        segments.set_declared_preferences(user, DeclaredPreferences(liked_categories=()))
        browser.find_element(By.ID, "p-users").send_keys(user)
        browser.find_element(By.ID, "preview").click()
        _wait_text(browser, "p-message", f"live {first} against {second}")
        block = browser.find_element(By.CSS_SELECTOR, f'#p-results .p-user[data-user="{user}"]')
        for column, version in ((".p-live", first), (".p-draft", second)):
            text = block.find_element(By.CSS_SELECTOR, column).text
            assert f"version {version}" in text and "served by engine" in text, text
        _make_live(browser, second, "publish", "more knn")
        assert _served_version(grpc_server, name, second) == second

        # Any two versions can be compared.
        Select(browser.find_element(By.ID, "diff-from")).select_by_value(first)
        Select(browser.find_element(By.ID, "diff-to")).select_by_value(second)
        browser.find_element(By.ID, "diff-show").click()
        _wait(browser, lambda b: b.find_element(By.ID, "diff").is_displayed(), "the diff never showed")
        diff = _text(browser, "diff")
        assert f"--- {name}@{first}" in diff and f"+++ {name}@{second}" in diff
        assert re.search(r"^-\s+weight: 0\.5$", diff, re.M) and re.search(r"^\+\s+weight: 3\.0$", diff, re.M), diff

        _make_live(browser, first, "rollback", "CTR dropped with more knn")
        assert _served_version(grpc_server, name, first) == first
        audit = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#audit tr")]
        assert [re.search(r"(save_draft|publish|rollback)", row).group(1) for row in audit] == [
            "rollback", "publish", "save_draft", "publish", "save_draft"]
        assert all(ADMIN_NAME in row for row in audit) and "CTR dropped with more knn" in audit[0]

        # The token never left the page's memory.
        assert browser.execute_script(
            "return window.localStorage.length + window.sessionStorage.length + document.cookie.length") == 0
        browser.execute_script("window.scrollTo(0, 0)")  # the editor's form in the picture
        screenshot = tmp_path / "admin-console.png"
        assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 0
    finally:
        segments.clear_declared_preferences(user)
        store.delete(name)
        store.client.close()


def test_the_form_edits_toggles_lists_and_boosts(browser: webdriver.Chrome, gateway_url: str, service_stack) -> None:
    fields = read_item_fields(service_stack.settings.paths.mappings_dir)
    default = load_default_profile(fields=fields)
    knn = next(i for i, c in enumerate(default.components) if isinstance(c, Knn))
    boost = next(i for i, c in enumerate(default.components) if isinstance(c, CategoryBoost))
    _start_new_profile(browser, gateway_url, "form-only")

    def click(selector: str) -> None:
        _wait(browser, lambda b: b.find_element(By.CSS_SELECTOR, selector), f"no {selector}").click()

    def yaml_shows(check, what: str) -> None:
        _wait(browser, lambda b: check(_yaml_view(b)), f"the YAML never showed {what}")

    # A component's toggle switches it off (weight 0) and back on (its weight again).
    click(f'input.toggle[data-loc="components[{knn}]:on"]')
    yaml_shows(lambda d: d["components"][knn]["weight"] == 0, "the kNN switched off")
    click(f'input.toggle[data-loc="components[{knn}]:on"]')
    yaml_shows(lambda d: d["components"][knn]["weight"] == default.components[knn].weight, "the kNN back on")
    # A knob that can be unset: off is null, on takes a value within its bounds.
    click('input.toggle[data-loc="filters.price_min:on"]')
    yaml_shows(lambda d: d["filters"]["price_min"] == 0, "a price floor")
    # Category boosts: add one, rename it, set its boost.
    click(f'div.field-problem[data-problem-for="components[{boost}].boosts"] ~ button.add')
    yaml_shows(lambda d: d["components"][boost]["boosts"] == {"new-category": 1.0}, "a new boost")
    key = browser.find_element(By.CSS_SELECTOR, f'input[data-loc="components[{boost}].boosts.new-category:key"]')
    key.send_keys(Keys.CONTROL, "a")
    key.send_keys("electronics/phones", Keys.TAB)
    yaml_shows(lambda d: d["components"][boost]["boosts"] == {"electronics/phones": 1.0}, "the renamed boost")
    _type_in_form(browser, f"components[{boost}].boosts.electronics/phones", "2.5")
    yaml_shows(lambda d: d["components"][boost]["boosts"] == {"electronics/phones": 2.5}, "the boost's value")
    # Components: add one of a picked type (with its schema defaults), then remove it.
    Select(browser.find_element(By.CSS_SELECTOR, 'select[data-loc="components:new"]')).select_by_visible_text("knn")
    click('select[data-loc="components:new"] ~ button.add')
    count = len(default.components)
    yaml_shows(lambda d: len(d["components"]) == count + 1 and d["components"][-1]["type"] == "knn", "the new component")
    # Two kNN components need distinct names (a whole-profile rule: listed under the form).
    _wait_text(browser, "problems", f"components[{count}] name 'knn' is already used")
    added = _yaml_view(browser)["components"][-1]
    assert {k: added[k] for k in ("k", "num_candidates")} == {"k": Knn.model_fields["k"].default,
                                                              "num_candidates": Knn.model_fields["num_candidates"].default}
    browser.find_element(By.XPATH, f'//div[@data-problem-for="components[{count}]"]/../legend/button').click()
    yaml_shows(lambda d: len(d["components"]) == count, "the component removed")
    _wait(browser, lambda b: _text(b, "problems") == "valid", "the profile never validated again")
    # YAML that does not parse leaves the form nothing to show, and says where to fix it.
    click("#tab-yaml")
    _type_yaml(browser, "name: [\n")
    _wait_text(browser, "problems", "does not parse at line")
    click("#tab-form")
    _wait_text(browser, "form", "fix it in the YAML view")
    assert not browser.find_elements(By.CSS_SELECTOR, "#form input")
    # The form is built from the gateway's own schema: the page asked nothing of any other host.
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert any(url.endswith("/admin/profile-schema") for url in loaded), loaded
    assert all(url.startswith(gateway_url) for url in loaded), loaded


def test_docs_render_from_the_gateway_alone(browser: webdriver.Chrome, gateway_url: str) -> None:
    browser.get(f"{gateway_url}/docs")
    WebDriverWait(browser, _WAIT_S).until(
        lambda b: "hotfeed gateway" in b.find_element(By.CSS_SELECTOR, "#swagger-ui").text, "Swagger UI never rendered")
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(gateway_url) for url in loaded), loaded


def test_a_product_manager_previews_live_against_a_draft_side_by_side(
    browser: webdriver.Chrome, gateway_url: str, service_stack
) -> None:
    settings = service_stack.settings
    name = f"console-pv-{uuid.uuid4().hex[:6]}"
    store = ProfileStore(settings.redis, fields=read_item_fields(settings.paths.mappings_dir))
    segments = RedisSegmentStore(settings.redis, client=store.client)
    user = f"console-pv-user-{uuid.uuid4().hex[:6]}"
    try:
        text = store.active("default").text.replace("name: default", f"name: {name}")
        live = store.save_draft(name, text, author=ADMIN_NAME).version
        store.publish(name, live, actor=ADMIN_NAME, comment="the live one")
        draft = store.save_draft(name, text.replace("weight: 2.0", "weight: 0.5", 1), author=ADMIN_NAME).version
        assert draft != live
        # A user serving knows (declared preferences), so the preview accepts them.
        segments.set_declared_preferences(user, DeclaredPreferences(liked_categories=()))

        _sign_in(browser, gateway_url)
        _open_profile(browser, name)

        browser.find_element(By.ID, "p-users").send_keys(user)
        browser.find_element(By.ID, "p-size").clear()
        browser.find_element(By.ID, "p-size").send_keys("5")
        browser.find_element(By.ID, "preview").click()
        message = _wait_text(browser, "p-message", f"live {live} against {draft}")
        assert "1 user(s), as named" in message
        block = browser.find_element(By.CSS_SELECTOR, f'#p-results .p-user[data-user="{user}"]')
        live_column = block.find_element(By.CSS_SELECTOR, ".p-live")
        draft_column = block.find_element(By.CSS_SELECTOR, ".p-draft")
        assert f"version {live}" in live_column.text and f"version {draft}" in draft_column.text
        assert "served by engine" in live_column.text and "served by engine" in draft_column.text
        # Side by side: the draft column starts to the right of the live one, on the same line.
        assert draft_column.location["x"] > live_column.location["x"] + live_column.size["width"] / 2
        assert abs(draft_column.location["y"] - live_column.location["y"]) < 5
        titles = service_stack.market.items.set_index("item_id")["title"]
        for column in (live_column, draft_column):
            rows = column.find_elements(By.CSS_SELECTOR, "tr[data-item]")
            assert len(rows) == 5
            first = rows[0]
            assert first.find_element(By.CSS_SELECTOR, ".p-title").text == titles[first.get_attribute("data-item")]
        assert re.search(r"\d+ of 5 items in common", block.find_element(By.CSS_SELECTOR, ".p-overlap").text)
    finally:
        segments.clear_declared_preferences(user)
        store.delete(name)
        store.client.close()
