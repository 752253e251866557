"""A real headless browser answers queries on the evaluator pages using only the keyboard.

Needs the Python package ``playwright`` and a Chromium binary at ``/usr/bin/chromium`` (Debian's
``chromium`` package; Playwright's own browser download is not used):

    pip install playwright
    apt-get update && apt-get install -y chromium

The test is skipped, saying which one is missing, when either is absent -- unless
``INSTRUCT_ENV_REQUIRE_BROWSER=1`` is set (as CI does), in which case it fails instead.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

CHROMIUM = os.environ.get("INSTRUCT_ENV_CHROMIUM", "/usr/bin/chromium")
INSTALL = "pip install playwright && apt-get update && apt-get install -y chromium"

if os.environ.get("INSTRUCT_ENV_REQUIRE_BROWSER") == "1":
    import uvicorn
    from playwright import sync_api

    assert os.path.exists(CHROMIUM), f"the browser test needs Chromium at {CHROMIUM}: {INSTALL}"
else:
    sync_api = pytest.importorskip("playwright.sync_api", reason=f"the browser test needs playwright: {INSTALL}")
    uvicorn = pytest.importorskip("uvicorn", reason="the server needs the 'server' extra: pip install 'instruct-env[server]'")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"the browser test needs Chromium at {CHROMIUM}: {INSTALL}", allow_module_level=True)

from instruct_env.feedback import FeedbackStore, Query, create_app  # noqa: E402

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture
def served(tmp_path):
    """The app on 127.0.0.1 in a uvicorn thread, over a store with one query of each kind."""
    store = FeedbackStore(tmp_path / "browser.db", min_evaluators=1, gold_rate=0.0, seed=5, synchronous="NORMAL")
    store.add_queries([
        Query("rating", "Sort the numbers.", ["1 2 3"], context="3 1 2"),
        Query("pairwise", "Greet the user.", ["Hello there!", "What do you want?"]),
        Query("thumbs", "Name a colour.", ["Tuesday"]),
        Query("ranking", "Count to three.", ["1 2 3", "one two", "3 2 1"]),
        Query("edit", "Capitalise: paris", ["paris"]),
        Query("comment", "Summarise the text.", ["It is a text."]),
    ])
    evaluator, token = store.add_evaluator("ann")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(store, responder=lambda messages: f"echo: {messages[-1]['content']} ({len(messages)})")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", store, evaluator, token
    server.should_exit = True
    thread.join(timeout=10)
    store.close()


def token_typed_at_login(browser, address, token):
    """A new page opened at ``address`` (which leads to the login form) with ``token`` typed, not yet sent."""
    page = browser.new_page()
    page.set_default_timeout(15_000)
    page.goto(address)
    # Type only once the autofocused token field really has focus (keys sent earlier are lost).
    page.wait_for_function("document.activeElement && document.activeElement.id === 'token'")
    page.keyboard.type(token)
    return page


def test_answer_with_keyboard_shortcuts_only(served):
    url, store, evaluator, token = served
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = token_typed_at_login(browser, url + "/", token)
            assert page.url.endswith("/login")

            def keys(*presses: str, kind: str | None = None) -> None:
                """Press keys; the last one submits a form, then wait for the next page."""
                with page.expect_navigation():
                    for key in presses:
                        page.keyboard.press(key)
                if kind is not None:
                    assert page.get_attribute("body", "data-kind") == kind

            keys("Enter", kind="rating")
            assert "3 1 2" in page.inner_text("#context")
            page.keyboard.press("?")
            assert page.is_visible("#help")
            page.keyboard.press("Escape")
            assert not page.is_visible("#help")
            page.keyboard.press("Enter")  # nothing chosen yet: the page says so and stays
            assert "Choose an answer first" in page.inner_text("#key-status")
            keys("4", "Enter", kind="pairwise")
            assert "Saved" in page.inner_text("#flash-notice")
            assert page.inner_text("#n-answered") == "1"
            left = page.inner_text("#completion-0")
            keys("b", "2", "Enter", kind="thumbs")
            keys("n", "Enter", kind="ranking")
            shown = [page.inner_text(f"#completion-{i}") for i in range(3)]
            page.keyboard.press("3")
            page.keyboard.press("1")
            page.keyboard.press("2")
            page.keyboard.press("Backspace")  # oops: take 2 back, then 2 again
            page.keyboard.press("2")
            assert page.inner_text("#ranking-order") == "3 > 1 > 2"
            keys("Enter", kind="edit")
            assert page.input_value("#completion") == "paris"
            keys("e", "Control+a", "P", "a", "r", "i", "s", "Control+Enter", kind="comment")
            keys("u", kind="edit")  # undo the edit: the edit page comes back
            assert "Undid your last answer" in page.inner_text("#flash-notice")
            page.keyboard.press("e")
            page.keyboard.press("End")
            page.keyboard.type("!")
            page.keyboard.press("Escape")  # leave the box; Enter now submits
            keys("Enter", kind="comment")
            page.keyboard.press("s")
            page.keyboard.type("I do not know the text")
            keys("Enter", kind="done")
            assert page.inner_text("#n-answered") == "5" and page.inner_text("#n-skipped") == "1"
        finally:
            browser.close()

    answers = {a.query_id: a.answer for a in store.current_answers()}
    pairwise = store.get_query(2)
    chosen = "A" if pairwise.completions[0] != left else "B"  # the evaluator chose the right one
    ranking = store.get_query(4).completions
    assert answers == {
        1: {"rating": 4},
        2: {"choice": chosen, "strength": 2},
        3: {"thumb": "down"},
        4: {"ranking": [ranking.index(shown[2]), ranking.index(shown[0]), ranking.index(shown[1])]},
        5: {"completion": "paris!"},
    }
    assert [(a.query_id, a.answer) for a in store.current_answers(status="skipped")] == [
        (6, {"reason": "I do not know the text"})
    ]
    log = [(e.type, e.query_id) for e in store.events_since(0)]
    assert log == [("submit", 1), ("submit", 2), ("submit", 3), ("submit", 4), ("submit", 5), ("undo", 5),
                   ("submit", 5), ("skip", 6)]
    assert store.events_since(0)[4].answer == {"completion": "Paris"}


def test_chat_with_keyboard_shortcuts_only(served):
    url, store, evaluator, token = served
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = token_typed_at_login(browser, url + "/login", token)
            with page.expect_navigation():
                page.keyboard.press("Enter")
            page.goto(url + "/chat")
            assert page.get_attribute("body", "data-kind") == "chat"

            def keys(*presses: str) -> None:
                with page.expect_navigation():
                    for key in presses:
                        page.keyboard.press(key)

            page.keyboard.press("y")  # nothing to rate yet: the page says so and stays
            assert "No reply to rate yet" in page.inner_text("#key-status")
            page.keyboard.press("m")
            page.keyboard.type("Hello there")
            keys("Control+Enter")
            assert page.inner_text("#reply-0") == "echo: Hello there (1)"
            page.keyboard.press("m")
            page.keyboard.type("Again")
            keys("Control+Enter")
            assert page.inner_text("#reply-1") == "echo: Again (3)"
            keys("y")  # thumbs up for the newest reply
            assert page.get_attribute("#thumb-up-1", "aria-pressed") == "true"
            assert page.get_attribute("#thumb-up-0", "aria-pressed") == "false"
            keys("n")  # changed my mind
            assert page.get_attribute("#thumb-down-1", "aria-pressed") == "true"
            keys("u")  # undo the change: back on the chat page, thumbs up again
            assert page.get_attribute("body", "data-kind") == "chat"
            assert "Undid your last answer" in page.inner_text("#flash-notice")
            assert page.get_attribute("#thumb-up-1", "aria-pressed") == "true"
        finally:
            browser.close()
    [_, second] = store.chat(evaluator.id, store.conversations(evaluator.id)[0].conversation)
    log = [(e.type, e.query_id, e.answer) for e in store.events_since(0)]
    assert log[:2] == [("submit", second.query_id, {"thumb": "up"}), ("edit", second.query_id, {"thumb": "down"})]
    assert [t for t, _, _ in log[2:]] == ["undo"] and second.thumb == "up"
