"""The feedback app in a real browser: log in, judge a pair with the keyboard, rank, write a demonstration, chat
with a tiny model, export as admin. Every step is checked against what the server stored, not only the page.

The server is the real app under uvicorn in a thread (SQLite in a temporary folder, the tiny checkpoint of the
`pretrained_dir` fixture as the chat model). The browser is the system's Chromium (Debian's `chromium` package)
driven by Playwright; Playwright's own browser downloads are never used. The page clock is frozen (Playwright's
`clock`), so the time an annotator spends on an item is exact and the screenshots are the same from run to run.
The tests share the server and run in file order: the admin's export at the end holds everyone's judgments.

Screenshots (1100x800) go to docs/screenshots/, which docs/feedback.md and the README show; set
ALINEA_SCREENSHOTS_DIR to write them elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from alinea.feedback import tasks
from alinea.feedback.security import SESSION_COOKIE

from .conftest import PASSWORD, make_token, make_user

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking"]
VIEWPORT = {"width": 1100, "height": 800}
REPO_ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("ALINEA_SCREENSHOTS_DIR") or REPO_ROOT / "docs" / "screenshots")
FROZEN_AT = datetime(2025, 3, 1, 9, 30, tzinfo=timezone.utc)

if not CHROMIUM.exists():
    pytest.skip(f"browser tests need Chromium at {CHROMIUM} (Debian package `chromium`, see `make install`)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need Playwright for Python (pip)")

pytestmark = pytest.mark.slow

# ---------------------------------------------------------------------------------------------------------------------
# what the projects hold

BASIL = {"type": "comparison", "id": "basil", "prompt": "How often should I water basil on a windowsill?",
         "response_a": "Water it when the top two centimetres of soil are dry, usually every two or three days, "
                       "and let the pot drain.",
         "response_b": "Basil likes water.", "preference": "a"}
# HTML in a prompt and a response: must be shown as text, never run or rendered.
HOSTILE_PROMPT = "<script>alert('prompt')</script><img src=x onerror=\"alert('img')\"> Is <b>this</b> bold?"
HOSTILE = {"type": "comparison", "id": "hostile", "prompt": HOSTILE_PROMPT,
           "response_a": "<b>Yes</b>, it is bold.", "response_b": "No: <i>it is shown as text</i>.",
           "preference": "b"}
TEA = {"type": "ranking", "id": "tea", "prompt": "How do I make a good cup of green tea?",
       "responses": ["Steep the leaves in water at about 80 °C for one to three minutes, then taste and adjust.",
                     "Boil the water, let it cool a little, steep the leaves for two minutes.",
                     "Use boiling water and steep for ten minutes.",
                     "Tea is a drink."],
       "ranks": [1, 2, 3, 4]}
HAIKU = {"type": "prompt", "id": "haiku", "prompt": "What is a haiku?"}
DEMONSTRATION = [
    ("assistant", "A haiku is a short Japanese poem of three lines, with five, seven and five syllables."),
    ("user", "Write one about rain."),
    ("assistant", "Soft rain on the roof\nthe kettle begins to sing\nno one needs to leave"),
]


@dataclass
class World:
    """The running server and what the tests set up in it."""

    url: str
    app: object
    seed: int
    admin: httpx.Client  # the JSON API as the admin (bearer token)
    ana: httpx.Client  # ... as the annotator ana (who works in the browser)
    bo: httpx.Client  # ... as the annotator bo (who works through the API only)
    users: dict[str, int] = field(default_factory=dict)
    projects: dict[str, int] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)

    def judgments(self, project: str) -> list[dict]:
        """The project's judgments as the server stored them (canonical export through the API)."""
        response = self.admin.get(f"/api/v1/projects/{self.projects[project]}/export",
                                  params={"format": "canonical"})
        assert response.status_code == 200, response.text
        rows = [json.loads(line) for line in response.text.splitlines()]
        return [row for row in rows if row["kind"] == "judgment"]

    def judgment(self, project: str, item: str, annotator: str = "ana") -> dict:
        found = [j for j in self.judgments(project)
                 if j["item_id"] == self.items[item] and j["annotator"] == annotator]
        assert len(found) == 1, f"{annotator} on {item}: {found}"
        return found[0]

    def order(self, item: str, n: int, annotator: str = "ana") -> list[int]:
        """The order the annotator is shown the item's responses in (the app's own rule, tasks.shown_order)."""
        return tasks.shown_order(n, item_id=self.items[item], user_id=self.users[annotator], seed=self.seed)


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="module")
def world(sqlite_template, pretrained_dir, tmp_path_factory):
    import uvicorn

    from alinea.commands.feedback import chat_sampler_from_checkpoint
    from alinea.feedback.app import create_app
    from alinea.feedback.settings import FeedbackSettings

    folder = tmp_path_factory.mktemp("browser")
    shutil.copy(sqlite_template, folder / "feedback.db")
    settings = FeedbackSettings(db_url=f"sqlite:///{folder / 'feedback.db'}", migrate=False,
                                secret_key="browser-tests")
    sampler = chat_sampler_from_checkpoint(pretrained_dir, max_new_tokens=12, temperature=1.0, top_p=1.0)
    app = create_app(settings, chat_sampler=sampler)
    sock = _free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"

    database = app.state.database
    users = {name: make_user(database, name, role) for name, role in
             [("admin", "admin"), ("ana", "annotator"), ("bo", "annotator")]}
    clients = {name: httpx.Client(base_url=url, headers={"authorization": f"Bearer {make_token(database, name)}"},
                                  timeout=30) for name in users}
    world = World(url=url, app=app, seed=settings.seed, admin=clients["admin"], ana=clients["ana"],
                  bo=clients["bo"], users=users)

    def project(key: str, name: str, task_type: str, members: list[str], records: list[tuple[dict, float]],
                guidelines: str) -> None:
        body = {"name": name, "task_type": task_type, "guidelines": guidelines, "members": members, "overlap": 2}
        created = world.admin.post("/api/v1/projects", json=body)
        assert created.status_code == 201, created.text
        world.projects[key] = created.json()["id"]
        for record, priority in records:  # one call per item, in order: item ids follow the list
            added = world.admin.post(f"/api/v1/projects/{world.projects[key]}/items",
                                     json={"items": [{"record": record, "priority": priority}]})
            assert added.status_code == 201, added.text
        if records:
            listed = world.admin.get(f"/api/v1/projects/{world.projects[key]}/items").json()
            world.items.update({row["external_id"]: row["id"] for row in listed})

    project("pairwise", "Gardening answers", "pairwise", ["ana", "bo"], [(BASIL, 10), (HOSTILE, 0)],
            "Prefer the answer that is **correct and specific**. Mark *both bad* when neither helps.")
    project("ranking", "Tea answers", "ranking", ["ana"], [(TEA, 0)],
            "Rank the answers from the most to the least helpful; tie answers that are equally good.")
    project("demonstration", "Poetry demonstrations", "demonstration", ["ana"], [(HAIKU, 0)],
            "Write the answer you would want from an excellent assistant.")
    project("chat", "Chat with the tiny model", "chat", ["ana"], [],
            "Talk with the model; at each turn pick the better of its two answers.")
    yield world

    for client in clients.values():
        client.close()
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Tab:
    """A browser page with its dialogs and script errors recorded, its clock frozen."""

    def __init__(self, browser, world: World) -> None:
        self.context = browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="UTC",
                                           base_url=world.url, accept_downloads=True)
        self.context.set_default_timeout(10_000)
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.clock.install(time=FROZEN_AT)  # fake time runs on from here ...
        self.page.clock.pause_at(FROZEN_AT + timedelta(minutes=1))  # ... to here, then moves only on demand

    def login(self, username: str, password: str = PASSWORD) -> None:
        page = self.page
        page.goto("/login")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        with page.expect_navigation():
            page.click("form[action='/login'] button[type=submit]")

    def screenshot(self, name: str, down_to: str | None = None) -> Path:
        """The viewport as SHOTS/name; `down_to`: from the top of the page to below that element instead."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        options = {"animations": "disabled", "caret": "hide"}
        if down_to is not None:
            self.page.evaluate("window.scrollTo(0, 0)")  # the sticky guidelines panel is drawn where it scrolled to
            box = self.page.locator(down_to).bounding_box()
            height = int(box["y"] + box["height"] + 16)
            options.update(full_page=True, clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})
        png = self.page.screenshot(**options)
        path = SHOTS / name
        partial = path.with_suffix(".png.part")
        partial.write_bytes(png)
        partial.replace(path)
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser, world):
    opened = Tab(browser, world)
    yield opened
    opened.close()
    assert not opened.errors, f"the page reported script errors: {opened.errors}"


def session_hashes(world: World, username: str) -> set[str]:
    from sqlalchemy import select

    from alinea.feedback.models import WebSession

    with world.app.state.database.read() as session:
        return set(session.scalars(select(WebSession.token_hash)
                                   .where(WebSession.user_id == world.users[username])))


# ---------------------------------------------------------------------------------------------------------------------
# the tests


def test_login_through_the_form(tab, world):
    page = tab.page
    before = session_hashes(world, "ana")
    page.goto("/")
    assert page.url.endswith("/login?next=%2F")  # not signed in: sent to the login form

    tab.login("ana", "wrong password")
    assert "Wrong username or password" in page.inner_text("p.error")
    assert session_hashes(world, "ana") == before

    tab.login("ana")
    assert page.url == f"{world.url}/"
    names = page.locator("ul.projects h2").all_inner_texts()
    assert names == ["Gardening answers", "Tea answers", "Poetry demonstrations", "Chat with the tiny model"]
    cookie = next(c for c in tab.context.cookies() if c["name"] == SESSION_COOKIE)
    assert cookie["httpOnly"]
    # The server keeps only the SHA-256 of the cookie, and it is a new session of ana's.
    assert session_hashes(world, "ana") - before == {hashlib.sha256(cookie["value"].encode()).hexdigest()}


def test_pairwise_with_the_keyboard_and_html_shown_as_text(tab, world):
    page = tab.page
    tab.login("ana")
    page.goto(f"/projects/{world.projects['pairwise']}")

    # The higher-priority item comes first, its answers in ana's shuffled order.
    order = world.order("basil", 2)
    shown = page.locator(".responses.pair .response .text").all_inner_texts()
    assert shown == [[BASIL["response_a"], BASIL["response_b"]][k] for k in order]
    page.click("details.shortcuts summary")  # the documented shortcuts, open for the screenshot
    page.evaluate("document.activeElement.blur()")

    page.keyboard.press("2")  # the right-hand answer is better ...
    page.keyboard.press("3")  # ... much better
    assert page.is_checked("input[name=choice][value=right]")
    assert page.is_checked("input[name=strength][value='3']")
    assert page.locator("[data-shortcut-help] li").all_inner_texts() == [
        "Answer A 1", "Answer B 2", "About the same t", "slightly better 1", "better 2", "much better 3",
        "negligibly or unsure 0", "Both answers are bad b", "Submit Enter", "Skip because s"]
    page.clock.run_for(4200)  # ana took 4.2 s
    tab.screenshot("pairwise.png")
    with page.expect_navigation():
        page.keyboard.press("Enter")

    stored = world.judgment("pairwise", "basil")
    # choice 'right' = screen position 1 = the item's response order[1]: 'a' if that is response_a.
    assert stored["answer"] == {"preference": "ab"[order[1]], "strength": 3, "both_bad": False,
                                "winner_position": 1}
    assert stored["shown_order"] == order
    assert stored["time_spent_ms"] == 4200
    assert stored["guideline_version"] == 1

    # The next item has HTML in its prompt and answers: shown as text, nothing runs, no element is made of it.
    prompt_text = page.inner_text(".prompt .text")
    assert prompt_text == HOSTILE_PROMPT
    assert page.locator("main script, main img, .prompt b, .response b, .response i").count() == 0
    hostile_order = world.order("hostile", 2)
    assert page.locator(".response .text").all_inner_texts() == [
        [HOSTILE["response_a"], HOSTILE["response_b"]][k] for k in hostile_order]
    page.keyboard.press("t")  # a tie: no strength step
    page.clock.run_for(3000)
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Nothing left for you in this project")
    assert tab.dialogs == []
    tie = world.judgment("pairwise", "hostile")
    assert tie["answer"] == {"preference": "tie", "strength": 0, "both_bad": False, "winner_position": None}
    assert tie["time_spent_ms"] == 3000


def test_ranking_by_drag_and_keys(tab, world):
    page = tab.page
    tab.login("ana")
    page.goto(f"/projects/{world.projects['ranking']}")
    order = world.order("tea", 4)
    card = page.locator("li.response")
    assert card.locator(".text").all_inner_texts() == [TEA["responses"][k] for k in order]

    def screen_order() -> list[int]:  # the shown positions of the cards, top to bottom
        return [int(p) for p in page.eval_on_selector_all("li.response", "cs => cs.map(c => c.dataset.position)")]

    def rank_boxes() -> list[int]:  # the rank box of each shown position
        return [int(page.input_value(f"select[name=rank_{k}]")) for k in range(4)]

    # Drag the fourth card above the first.
    page.locator("li.response[data-position='3'] h3").drag_to(page.locator("li.response[data-position='0'] h3"))
    assert screen_order() == [3, 0, 1, 2]
    assert rank_boxes() == [2, 3, 4, 1]
    # Keys: 3 selects the third card, up twice; 2 selects the second card, = ties it with the card above.
    for key in ["3", "ArrowUp", "ArrowUp", "2", "="]:
        page.keyboard.press(key)
    assert screen_order() == [3, 2, 0, 1]
    assert rank_boxes() == [3, 3, 2, 1]  # competition ranking: 1, 2, 3, 3 top to bottom
    page.clock.run_for(7000)
    tab.screenshot("ranking.png", down_to="label.flag")  # the four cards need a little more than 800 px
    with page.expect_navigation():
        page.keyboard.press("Enter")

    stored = world.judgment("ranking", "tea")
    expected = [0] * 4
    for position, rank in enumerate([3, 3, 2, 1]):
        expected[order[position]] = rank
    assert stored["answer"] == {"ranks": expected, "none_acceptable": False}
    assert stored["time_spent_ms"] == 7000


def test_demonstration_of_two_turns(tab, world):
    page = tab.page
    tab.login("ana")
    page.goto(f"/projects/{world.projects['demonstration']}")
    assert page.inner_text(".prompt .text") == HAIKU["prompt"]
    for k, (role, text) in enumerate(DEMONSTRATION):
        box = page.locator(f"textarea[name=turn_{k}]")
        assert role in box.locator("xpath=..").get_attribute("class")
        box.click()
        page.keyboard.type(text)  # Enter inside a text box is a new line, not a submission
    assert page.input_value("textarea[name=turn_2]") == DEMONSTRATION[2][1]
    page.clock.run_for(30_000)
    tab.screenshot("demonstration.png")
    page.keyboard.press("Escape")  # leave the text box; Enter now submits
    with page.expect_navigation():
        page.keyboard.press("Enter")

    stored = world.judgment("demonstration", "haiku")
    turns = stored["answer"]["turns"]
    assert [t["role"] for t in turns] == ["assistant", "user", "assistant"]
    assert stored["time_spent_ms"] == 30_000
    # An HTML form sends the line breaks of a text box as CRLF (the HTML standard's form encoding); the SFT data
    # holds "\n" only: the server normalises them.
    assert [t["content"] for t in turns] == [text for _, text in DEMONSTRATION]


def test_chat_with_the_tiny_model(tab, world):
    page = tab.page
    tab.login("ana")
    page.goto(f"/projects/{world.projects['chat']}")
    page.fill("[data-chat-send] textarea[name=content]", "Tell me about the garden.")
    with page.expect_response(lambda r: r.url.endswith("/messages")) as answered:
        page.click("[data-chat-send] button[type=submit]")
    chat_id = answered.value.json()["id"]
    page.wait_for_selector("[data-chat-pending]:not([hidden])")
    samples = page.locator("[data-chat-pending] .text").all_inner_texts()
    on_server = world.ana.get(f"/api/v1/chats/{chat_id}").json()
    assert on_server["pending"] == samples and on_server["turns"] == 0

    page.keyboard.press("2")  # the right-hand sample ...
    page.keyboard.press("u")  # ... and a thumb up for it
    with page.expect_response(lambda r: r.url.endswith("/pick")):
        page.keyboard.press("Enter")  # "Continue with this answer"
    page.wait_for_selector("[data-chat-send]:not([hidden])")
    log = page.locator("[data-chat-log] .text").all_inner_texts()
    assert log == ["Tell me about the garden.", samples[1]]  # the conversation continues from the pick

    page.fill("[data-chat-send] textarea[name=content]", "And what grows there in spring?")
    with page.expect_response(lambda r: r.url.endswith("/messages")):
        page.click("[data-chat-send] button[type=submit]")
    page.wait_for_selector("[data-chat-pending]:not([hidden])")
    tab.screenshot("chat.png")

    on_server = world.ana.get(f"/api/v1/chats/{chat_id}").json()
    assert [m["content"] for m in on_server["messages"]] == [
        "Tell me about the garden.", samples[1], "And what grows there in spring?"]
    assert on_server["turns"] == 1 and len(on_server["pending"]) == 2
    export = world.admin.get(f"/api/v1/projects/{world.projects['chat']}/export").text.splitlines()
    turn = next(row for row in map(json.loads, export) if row["kind"] == "chat_turn" and row["chat_id"] == chat_id)
    assert turn["winner_position"] == 1 and turn["samples"][turn["continued_with"]] == samples[1]
    assert turn["continued_with"] == turn["shown_order"][1]
    assert turn["preference"] == "ab"[turn["continued_with"]]
    assert (turn["strength"], turn["thumb"], turn["both_bad"]) == (2, "up", False)


def test_admin_downloads_the_judgments(tab, world, tmp_path):
    # Another annotator judges the first pair through the API, so the export holds two people's work.
    project = world.projects["pairwise"]
    lease = world.bo.post(f"/api/v1/projects/{project}/lease")
    assert lease.status_code == 200, lease.text
    assert lease.json()["item_id"] == world.items["basil"]
    sent = world.bo.post(f"/api/v1/projects/{project}/items/{world.items['basil']}/judgments",
                         json={"answer": {"choice": "left", "strength": 1}, "idempotency_key": "bo-basil",
                               "time_spent_ms": 6000})
    assert sent.status_code == 201, sent.text
    bo_order = world.order("basil", 2, annotator="bo")

    page = tab.page
    tab.login("admin")
    page.goto(f"/admin/projects/{project}")
    with page.expect_download() as download:
        page.click("p.exports a:text-is('all judgments (JSONL)')")
    assert download.value.suggested_filename == "Gardening-answers-canonical.jsonl"
    saved = tmp_path / "canonical.jsonl"
    download.value.save_as(saved)
    rows = [json.loads(line) for line in saved.read_text(encoding="utf-8").splitlines()]
    judged = [row for row in rows if row["kind"] == "judgment"]
    assert judged == world.judgments("pairwise")  # the file holds exactly what the server stored
    bo_row = next(row for row in judged if row["annotator"] == "bo")
    assert bo_row["answer"] == {"preference": "ab"[bo_order[0]], "strength": 1, "both_bad": False,
                                "winner_position": 0}
    assert bo_row["meta"] == {} and bo_row["item_external_id"] == "basil"

    with page.expect_download() as download:
        page.click("p.exports a:text-is('alinea records')")
    records = [json.loads(line) for line in Path(download.value.path()).read_text(encoding="utf-8").splitlines()]
    bo_record = next(r for r in records if r["annotator"] == "bo")
    assert (bo_record["type"], bo_record["preference"], bo_record["strength"]) == (
        "comparison", "ab"[bo_order[0]], 1)
    assert len(records) == len(judged)  # one comparison record per judgment, ties included

    # The dashboard's quality table. bo: one judgment of 6.0 s -> 3600 / 6 = 600 an hour; he chose the left answer.
    cells = "rows => rows.map(row => [...row.cells].map(cell => cell.innerText))"
    table = {row[0]: row for row in page.locator("table.quality tbody tr").evaluate_all(cells)}
    assert table["bo"] == ["bo", "1", "0", "6.0 s", "600", "– (n=0)", "100%"]
    ana = [j for j in judged if j["annotator"] == "ana"]
    if len(ana) == 2:  # the pairwise test ran first: 4.2 s and 3.0 s -> median 3.6 s, 3600 * 2 / 7.2 = 1000 an
        # hour; her one non-tie judgment went to the right-hand answer -> left wins 0%
        assert table["ana"] == ["ana", "2", "0", "3.6 s", "1000", "– (n=0)", "0%"]
    tab.screenshot("admin.png")
