"""The labeling page: answers written at once and taken back, bad requests refused, and the
page itself in a real headless browser (skipped, with the reason, where none is installed)."""

import json
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from fewlabels.errors import UsageError
from fewlabels.labeling import Conflict, Session, check_class_name, serve


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "pets"
    (root / "unlabeled").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(
            root / "unlabeled" / f"{i}.png")
    return root


def test_an_answer_is_a_copy_written_at_once_and_undo_takes_it_back(folder):
    s = Session(folder)
    assert s.view()["todo"][0] == "unlabeled/0.png" and len(s.view()["todo"]) == 8
    s.answer("unlabeled/0.png", "cat", seen=0)
    copy = folder / "labeled" / "cat" / "0.png"
    assert copy.read_bytes() == (folder / "unlabeled" / "0.png").read_bytes()  # a copy
    assert (folder / "unlabeled" / "0.png").exists()  # the original stays
    s.answer("unlabeled/1.png", None, seen=1)  # skipped: not sure
    view = s.view()
    assert (view["labeled"], view["skipped"], len(view["todo"])) == (1, 1, 6)
    assert Session(folder).view() == view  # a new page, the same state: nothing lost
    s.undo(seen=2)
    s.undo(seen=1)
    assert not copy.exists() and Session(folder).view()["todo"][0] == "unlabeled/0.png"


def test_a_journal_line_torn_by_a_kill_is_dropped_and_the_next_answer_gets_its_own(folder):
    s = Session(folder)
    s.answer("unlabeled/0.png", "cat", seen=0)
    s.answer("unlabeled/1.png", None, seen=1)
    journal = folder / ".fewlabels" / "labeling.jsonl"
    with journal.open("a") as f:
        f.write('{"file": "unlabeled/2.png", "cla')  # killed mid-write
    again = Session(folder)
    assert (again.view()["labeled"], again.view()["skipped"]) == (1, 1)
    assert again.view()["todo"][0] == "unlabeled/2.png"  # asked again
    again.answer("unlabeled/2.png", "dog", seen=2)
    lines = journal.read_text().splitlines()
    assert [json.loads(line)["file"] for line in lines] == [
        "unlabeled/0.png", "unlabeled/1.png", "unlabeled/2.png"]
    assert Session(folder).view() == again.view()


DEEP = "[" * 100_000 + "]" * 100_000  # deeper than the JSON parser's recursion


@pytest.mark.parametrize("line, why", [
    ("{bad", "not JSON"), (DEEP, "nested too deeply"), ("[1]", "not an answer"),
    ('{"file": 3, "class": null, "copy": null}', "its file is not a path"),
    ('{"file": "unlabeled/3.png", "class": "a/b", "copy": "labeled/a/b/3.png"}',
     "not one folder name"),
    ('{"file": "unlabeled/3.png", "class": "cat", "copy": "../victim"}',
     "is not in labeled/cat/"),
    ('{"file": "unlabeled/3.png", "class": "cat", "copy": "labeled/dog/3.png"}',
     "is not in labeled/cat/"),
    ('{"file": "unlabeled/3.png", "class": null, "copy": "labeled/cat/3.png"}',
     "a skipped image with a copy")])
def test_a_journal_line_changed_by_hand_is_refused_and_touches_nothing(folder, line, why):
    """A damaged or tampered answer is one error naming the line, never a traceback, and
    never a path outside labeled/ that undo would delete."""
    Session(folder).answer("unlabeled/0.png", "cat", seen=0)
    victim = folder.parent / "victim"
    victim.write_text("keep")
    journal = folder / ".fewlabels" / "labeling.jsonl"
    before = journal.read_text()
    journal.write_text(before + line + "\n")
    with pytest.raises(UsageError, match=f"labeling.jsonl line 2 .*{why}"):
        Session(folder)
    assert victim.read_text() == "keep" and (folder / "labeled" / "cat" / "0.png").is_file()
    journal.write_text(before)
    assert Session(folder).view()["labeled"] == 1


@pytest.mark.parametrize("content, why", [
    ("{bad", "not JSON"), (DEEP, "nested too deeply"), ('["unlabeled/0.png", 3]',
                                                       "not a list of files")])
def test_a_damaged_queue_is_refused_not_guessed(folder, content, why):
    Session(folder, ["unlabeled/1.png", "unlabeled/0.png"])
    (folder / ".fewlabels" / "queue.json").write_text(content)
    with pytest.raises(UsageError, match=f"queue.json is damaged .*{why}.*delete it"):
        Session(folder)


def test_a_kill_between_journal_and_copy_leaves_no_stray_copy_and_asks_again(folder,
                                                                            monkeypatch):
    s = Session(folder)
    s.answer("unlabeled/0.png", "cat", seen=0)

    def killed(*args):
        raise KeyboardInterrupt  # the process dies after the journal line, before the copy

    monkeypatch.setattr("fewlabels.labeling.shutil.copyfile", killed)
    with pytest.raises(KeyboardInterrupt):
        s.answer("unlabeled/1.png", "cat", seen=1)
    monkeypatch.undo()
    again = Session(folder)  # the page reopened: the answer without its copy is dropped
    assert again.view()["labeled"] == 1 and again.view()["todo"][0] == "unlabeled/1.png"
    again.answer("unlabeled/1.png", "cat", seen=1)
    assert sorted(p.name for p in (folder / "labeled" / "cat").iterdir()) == ["0.png", "1.png"]
    journal = folder / ".fewlabels" / "labeling.jsonl"
    assert [json.loads(line)["copy"] for line in journal.read_text().splitlines()] == [
        "labeled/cat/0.png", "labeled/cat/1.png"]


def test_a_copy_that_fails_takes_its_answer_back(folder, monkeypatch):
    s = Session(folder)

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("fewlabels.labeling.shutil.copyfile", full)
    with pytest.raises(OSError):
        s.answer("unlabeled/0.png", "cat", seen=0)
    assert s.view()["answers"] == 0 and Session(folder).view()["answers"] == 0
    assert not any((folder / "labeled" / "cat").iterdir())


@pytest.mark.parametrize("name", ["a/b", "..", ".hidden", "", "x\ny", "a\\b", "z" * 101,
                                  "\U0001F600" * 64, "\ud800"])  # 256 bytes; no UTF-8
def test_a_class_name_that_is_not_one_folder_name_is_refused(name):
    with pytest.raises(UsageError):
        check_class_name(name)


def test_a_class_name_of_255_bytes_is_one_folder_name(tmp_path):
    name = "\U0001F600" * 63 + "abc"  # 255 bytes in UTF-8
    (tmp_path / check_class_name(name, tmp_path)).mkdir()


def test_a_class_name_is_held_to_its_file_system_s_limit(tmp_path, monkeypatch):
    """The limit is the folder's own (``pathconf``), read where the folder would go."""
    monkeypatch.setattr("fewlabels.outputs.os.pathconf", lambda folder, key: 20)
    check_class_name("a" * 20, tmp_path / "labeled")  # not there yet: its parent's limit
    with pytest.raises(UsageError, match="21 bytes in UTF-8, more than the 20"):
        check_class_name("a" * 21, tmp_path / "labeled")


def test_bad_answers_touch_nothing(folder):
    s = Session(folder)
    for rel, label in [("../../etc/passwd", "cat"), ("unlabeled/0.png", "../../evil"),
                       ("/etc/passwd", "cat"), ("unlabeled/nine.png", "cat")]:
        with pytest.raises(UsageError):
            s.answer(rel, label, seen=0)
    with pytest.raises(Conflict, match="another page"):  # a page that has not seen the last
        s.answer("unlabeled/0.png", "cat", seen=5)
    assert not (folder / "labeled").exists() and not s.answers


def _server(folder):
    ready = threading.Event()
    where = {}

    def up(url):
        where["url"] = url
        ready.set()

    threading.Thread(target=serve, args=(folder,), kwargs={"ready": up}, daemon=True).start()
    assert ready.wait(30)
    return where["url"]


def _post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_server_refuses_paths_outside_the_folder_and_stale_pages(folder):
    url = _server(folder)
    with urllib.request.urlopen(url) as r:
        assert b"fewlabels" in r.read()
    with urllib.request.urlopen(url + "image?file=unlabeled/3.png") as r:
        assert r.read() == (folder / "unlabeled" / "3.png").read_bytes()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url + "image?file=../../../etc/passwd")
    assert e.value.code == 403
    status, body = _post(url + "api/label", {"file": "unlabeled/0.png", "class": "a/b",
                                             "seen": 0})
    assert status == 400 and "not one folder name" in body["error"]
    assert _post(url + "api/label", {"file": "unlabeled/0.png", "class": "dog", "seen": 0})[0] \
        == 200
    status, body = _post(url + "api/label", {"file": "unlabeled/1.png", "class": "dog",
                                             "seen": 0})  # a second page, one answer behind
    assert status == 409 and "reload" in body["error"]
    assert sorted(p.name for p in (folder / "labeled" / "dog").iterdir()) == ["0.png"]
    other = subprocess.run([sys.executable, "-m", "fewlabels", "label", str(folder),
                            "--no-browser"], capture_output=True, text=True, timeout=120)
    assert other.returncode == 2 and "being written by" in other.stderr  # one server a folder


def _request(url, method="GET", body=None, headers=()):
    """(status, JSON body or None) of a request sent with exactly ``headers`` added."""
    import http.client
    from urllib.parse import urlparse

    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.putrequest(method, u.path + (f"?{u.query}" if u.query else ""), skip_host=True)
    for k, v in dict(headers).items():
        conn.putheader(k, v)
    data = json.dumps(body).encode() if body is not None else b""
    conn.putheader("Content-Length", str(len(data)))
    conn.endheaders(data)
    r = conn.getresponse()
    raw = r.read()
    return r.status, (json.loads(raw) if r.getheader("Content-Type") == "application/json"
                      else None)


def test_requests_the_page_did_not_make_are_refused_and_write_nothing(folder):
    url = _server(folder)
    port = url.rsplit(":", 1)[1].strip("/")
    ours = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json"}
    answer = {"file": "unlabeled/0.png", "class": "dog", "seen": 0}
    # a web page whose name was rebound to 127.0.0.1 sends its own host name
    status, body = _request(url + "api/state", headers={"Host": f"evil.example:{port}"})
    assert status == 403 and "only this page" in body["error"]
    assert _request(url + "api/label", "POST", answer,
                    {**ours, "Host": f"evil.example:{port}"})[0] == 403
    # a form on another site: not JSON, or another origin
    assert _request(url + "api/label", "POST", answer, {**ours, "Content-Type": "text/plain"})[0] \
        == 403
    assert _request(url + "api/label", "POST", answer,
                    {**ours, "Origin": "http://evil.example"})[0] == 403
    assert not (folder / "labeled").exists()
    # a count that is not a number gets its own message, not a "stale page" one
    status, body = _request(url + "api/label", "POST", {**answer, "seen": "0"}, ours)
    assert status == 400 and "'seen' is '0'" in body["error"]
    # the page's own request, from localhost too
    assert _request(url + "api/label", "POST", answer,
                    {**ours, "Host": f"localhost:{port}",
                     "Origin": f"http://localhost:{port}"})[0] == 200
    assert [p.name for p in (folder / "labeled" / "dog").iterdir()] == ["0.png"]


def test_an_answer_that_cannot_be_written_is_said_and_leaves_no_copy(folder):
    url = _server(folder)
    journal = folder / ".fewlabels" / "labeling.jsonl"
    journal.mkdir()  # the journal cannot be appended to (works as root too)
    status, body = _post(url + "api/label", {"file": "unlabeled/0.png", "class": "cat",
                                             "seen": 0})
    assert status == 500 and "could not write the answer" in body["error"]
    assert list((folder / "labeled" / "cat").iterdir()) == []  # the copy went too
    journal.rmdir()
    assert _post(url + "api/label", {"file": "unlabeled/0.png", "class": "cat",
                                     "seen": 0})[0] == 200  # the server is still up
    assert [p.name for p in (folder / "labeled" / "cat").iterdir()] == ["0.png"]


def _browser():
    """A headless Chromium driven by Selenium, or a skip naming what is missing."""
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium)")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip("no Chromium with its driver here (Debian: apt-get install chromium "
                    "chromium-driver; `make browser` does it)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_label_five_by_keyboard_undo_one_reload_and_go_on(folder, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    for name in ("cat", "dog"):
        (folder / "labeled" / name).mkdir(parents=True)
    url = _server(folder)
    browser = _browser()
    try:
        wait = WebDriverWait(browser, 20)

        def progress():
            return browser.find_element(By.ID, "progress").text

        browser.get(url)
        wait.until(lambda b: "8 to go" in progress())
        body = browser.find_element(By.TAG_NAME, "body")
        for n, key in enumerate("12121", 1):  # cat, dog, cat, dog, cat
            body.send_keys(key)
            wait.until(lambda b, n=n: f"{8 - n} to go" in progress())
        body.send_keys("u")  # the fifth answer taken back
        wait.until(lambda b: "4 labeled" in progress() and "4 to go" in progress())
        browser.save_screenshot(str(tmp_path / "page.png"))
        browser.refresh()  # closing and opening the page loses nothing
        wait.until(lambda b: "4 labeled" in progress())
        browser.find_element(By.ID, "classname").send_keys("bird", Keys.ENTER)
        wait.until(lambda b: "bird" in b.find_element(By.ID, "classes").text)
        browser.find_element(By.TAG_NAME, "body").send_keys("3")  # the new class, by its key
        wait.until(lambda b: "5 labeled" in progress())
    finally:
        browser.quit()
    on_disk = {d.name: sorted(p.name for p in d.iterdir())
               for d in (folder / "labeled").iterdir()}
    assert on_disk == {"cat": ["0.png", "2.png"], "dog": ["1.png", "3.png"], "bird": ["4.png"]}
    assert len(list((folder / "unlabeled").glob("*.png"))) == 8  # the originals stay


def test_the_queue_is_what_suggest_chooses_from_unlabeled_not_test(folder):
    (folder / "test" / "cat").mkdir(parents=True)
    shutil.copy(folder / "unlabeled" / "0.png", folder / "test" / "cat" / "t.png")
    assert all(f.startswith("unlabeled/") for f in Session(folder).view()["todo"])


def test_a_port_in_use_is_one_line_naming_it(folder):
    """The server's OSError used to reach the disk-space message ("Address already in use:
    free some space, fix the permissions ...")."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"--port {port} is in use by another program: "
                                             "choose another, or 0 for a free one"):
            serve(folder, port=port)
