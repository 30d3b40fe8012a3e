"""``fewlabels label DIR``: a labeling page in the browser, served from this machine only.

The page shows the images to label (the order ``suggest`` gives, or the folder's), large,
one at a time or as a grid; a class is taken by key (1–9, 0) or click, new classes can be
added, ``s`` skips (not sure), ``u`` / Backspace undoes. Each answer is written at once:
the image is **copied** into ``DIR/labeled/<class>/`` (the original is never moved or
changed) and the answer appended to ``DIR/.fewlabels/labeling.jsonl``; closing the page
loses nothing and opening it again continues. One process serves a folder at a time (the
kernel's lock), bound to 127.0.0.1 on a free port; every answer names the number of
answers the page has seen, so a second page open on the same folder is refused instead of
writing over the first one's work.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from . import images
from .checkpoint import atomic_write_bytes
from .errors import UsageError, parse_json
from .outputs import name_limit, run_folder_lock, temporary_path
from .suggesting import candidates

STATE = ".fewlabels"  # beside the images: the queue and the journal of answers
MAX_CLASS_NAME = 100


def check_class_name(name, folder: str | Path = ".") -> str:
    """A class name that is one folder name: else a UsageError naming what is wrong."""
    if not isinstance(name, str) or not name.strip():
        raise UsageError("a class name must be a non-empty string")
    if len(name) > MAX_CLASS_NAME:
        raise UsageError(f"class name {name[:20]!r}... is {len(name)} characters: use at most "
                         f"{MAX_CLASS_NAME}")
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise UsageError(f"class name {name!r} is not one folder name: no slashes, no leading "
                         "dot")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UsageError(f"class name {name!r} holds a control character: use letters, "
                         "digits, spaces or punctuation")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, which JSON can carry and no file name can
        raise UsageError(f"class name {name[:20]!r} is not valid text (a lone surrogate "
                         "character): use letters, digits, spaces or punctuation") from None
    limit = name_limit(folder)
    if size > limit:
        raise UsageError(f"class name {name[:20]!r}... is {size} bytes in UTF-8, more than the "
                         f"{limit} a folder name may hold here: use a shorter name")
    return name


class Session:
    """The labeling of one folder: its queue, its classes and the answers so far."""

    def __init__(self, root: str | Path, queue: list[str] | None = None):
        self.given = str(root)  # as the user wrote it: the page's `fit` hint runs from there
        self.root = Path(root).resolve()
        self.labeled = self.root / "labeled"
        self.state = self.root / STATE
        self.journal = self.state / "labeling.jsonl"
        self.lock = threading.Lock()
        saved = self.state / "queue.json"
        if queue is not None:
            self.state.mkdir(exist_ok=True)
            atomic_write_bytes(saved, json.dumps(queue).encode())
        elif saved.is_file():
            queue = self._read_queue(saved)
        else:
            queue = self._unlabeled()
        self.queue = [q for q in queue if self._inside(q) is not None]
        self.answers = self._read_journal()

    def _read_queue(self, saved: Path) -> list[str]:
        """The queue a first run saved; a damaged one is a UsageError (not a guess)."""
        try:
            queue = parse_json(saved.read_text())
        except ValueError as e:
            queue = e
        if not isinstance(queue, list) or not all(isinstance(q, str) for q in queue):
            why = f"not JSON: {queue}" if isinstance(queue, ValueError) else "not a list of files"
            raise UsageError(f"{saved} is damaged ({why}): delete it and run `fewlabels label` "
                             "again (with --encoder to have the images chosen again); the "
                             "answers so far are kept")
        return queue

    def _bad_answer(self, entry) -> str | None:
        """Why a journal line is not an answer this page wrote, or None when it is one. A
        copy must lie in labeled/<its class>/: undo deletes it."""
        if not isinstance(entry, dict) or set(entry) != {"file", "class", "copy"}:
            return "not an answer: an object with file, class and copy"
        if not isinstance(entry["file"], str):
            return "its file is not a path"
        label, copy = entry["class"], entry["copy"]
        if label is None:
            return None if copy is None else "a skipped image with a copy"
        try:
            check_class_name(label, self.labeled)
        except UsageError as e:
            return str(e)
        if not isinstance(copy, str):
            return "a labeled image without its copy"
        try:
            inside = (self.root / copy).resolve().parent == (self.labeled / label).resolve()
        except (OSError, ValueError):
            inside = False
        return None if inside else f"its copy {copy!r} is not in labeled/{label}/"

    def _read_journal(self) -> list[dict]:
        """The answers so far. An answer is journaled before its copy is written: a last
        line a kill tore mid-write (no newline at its end), or an answer whose copy is not
        in labeled/ (a kill before the copy was in place, or the copy deleted by hand), is
        dropped and the journal written again without it; its image is asked again, and
        no copy is left in labeled/ that the journal does not name."""
        if not self.journal.is_file():
            return []
        *lines, torn = self.journal.read_text().split("\n")  # torn: "" after a newline
        answers = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = parse_json(line)
            except ValueError as e:
                entry = e
            why = f"not JSON: {entry}" if isinstance(entry, ValueError) else self._bad_answer(entry)
            if why:
                raise UsageError(f"{self.journal} line {number} is not an answer this page "
                                 f"wrote ({why[:120]}): remove that line, or the file to "
                                 "start its record again (the copies in labeled/ are kept)")
            answers.append(entry)
        kept = [a for a in answers if not a.get("copy") or (self.root / a["copy"]).is_file()]
        if torn.strip() or len(kept) < len(answers):
            self._write_journal(kept)
        return kept

    def _write_journal(self, answers: list[dict]) -> None:
        self.state.mkdir(exist_ok=True)
        atomic_write_bytes(self.journal, "".join(json.dumps(a) + "\n"
                                                 for a in answers).encode())

    def _unlabeled(self) -> list[str]:
        """The images ``suggest`` would choose from, in name order."""
        skipped: dict[str, str] = {}
        return sorted(os.path.relpath(f, self.root)
                      for f in images.expand(candidates(self.root), skipped))

    def _inside(self, rel: str) -> Path | None:
        """The file ``rel`` names inside the folder, or None for a path outside it."""
        try:
            path = (self.root / rel).resolve()
        except (OSError, ValueError):
            return None
        if not path.is_relative_to(self.root) or path.is_relative_to(self.state):
            return None
        return path

    def classes(self) -> list[str]:
        return sorted(d.name for d in self.labeled.iterdir() if d.is_dir()
                      and not d.name.startswith(".")) if self.labeled.is_dir() else []

    def view(self) -> dict:
        answered = {a["file"] for a in self.answers}
        todo = [f for f in self.queue if f not in answered]
        counts = {c: sum(1 for a in self.answers if a.get("class") == c) for c in self.classes()}
        return {"classes": self.classes(), "todo": todo, "answers": len(self.answers),
                "labeled": sum(1 for a in self.answers if a.get("class") is not None),
                "skipped": sum(1 for a in self.answers if a.get("class") is None),
                "counts": counts, "folder": self.given, "last": self.answers[-1:]}

    def _check_seen(self, seen) -> None:
        if seen != len(self.answers):
            raise Conflict(f"this page has seen {seen} answers, the folder holds "
                           f"{len(self.answers)}: another page is labeling it — reload")

    def answer(self, rel: str, label: str | None, seen: int) -> dict:
        """Label ``rel`` with class ``label`` (None: skip, not sure)."""
        with self.lock:
            self._check_seen(seen)
            path = self._inside(rel) if isinstance(rel, str) else None
            if path is None or rel not in self.queue:
                raise UsageError(f"{rel!r} is not an image of this folder's queue")
            if any(a["file"] == rel for a in self.answers):
                raise UsageError(f"{rel!r} is answered already: undo first")
            entry = {"file": rel, "class": None, "copy": None}
            target = None
            if label is not None:
                folder = self.labeled / check_class_name(label, self.labeled)
                folder.mkdir(parents=True, exist_ok=True)
                target = folder / path.name
                n = 1
                while target.exists():  # never over another image
                    target = folder / f"{path.stem}-{n}{path.suffix}"
                    n += 1
                entry.update({"class": label, "copy": os.path.relpath(target, self.root)})
            self._append(entry)  # journaled first: a kill leaves no copy it does not name
            if target is not None:
                tmp = temporary_path(target)
                try:
                    shutil.copyfile(path, tmp)
                    os.replace(tmp, target)
                except OSError:  # no copy: the answer goes too, the image stays to answer
                    self.answers.pop()
                    self._write_journal(self.answers)
                    raise
                finally:
                    tmp.unlink(missing_ok=True)
            return self.view()

    def undo(self, seen: int) -> dict:
        """Take the last answer back (its copy removed)."""
        with self.lock:
            self._check_seen(seen)
            if not self.answers:
                raise UsageError("nothing to undo")
            last = self.answers.pop()
            if last.get("copy"):
                (self.root / last["copy"]).unlink(missing_ok=True)
            self._write_journal(self.answers)
            return self.view()

    def _append(self, entry: dict) -> None:
        self.state.mkdir(exist_ok=True)
        with self.journal.open("a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.answers.append(entry)


class Conflict(UsageError):
    """An answer from a page that has not seen the latest answers."""


PAGE = (Path(__file__).parent / "labeling.html")


def handler(session: Session):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet: the terminal shows what matters
            pass

        def _send(self, status, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status, data) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def _foreign(self) -> bool:
            """A request this page did not make, answered 403: another host name (a web
            page that rebinds its name to 127.0.0.1 could read the folder) or, on a POST,
            not JSON (a form on another site posts without asking the browser first)."""
            port = self.server.server_address[1]
            host = self.headers.get("Host", "")
            origin = self.headers.get("Origin")
            ours = {f"127.0.0.1:{port}", f"localhost:{port}"}
            bad = host not in ours or (origin is not None
                                       and origin not in {f"http://{h}" for h in ours})
            if self.command == "POST":
                kind = self.headers.get("Content-Type", "").split(";")[0].strip()
                bad = bad or kind != "application/json"
            if bad:
                self._json(HTTPStatus.FORBIDDEN, {"error": "only this page, at 127.0.0.1:"
                                                  f"{port}, may use this server"})
            return bad

        def do_GET(self):
            if self._foreign():
                return None
            url = urlparse(self.path)
            if url.path == "/":
                return self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")
            if url.path == "/api/state":
                return self._json(HTTPStatus.OK, session.view())
            if url.path == "/image":
                rel = parse_qs(url.query).get("file", [""])[0]
                path = session._inside(rel)
                if path is None or not path.is_file() or rel not in session.queue:
                    return self._json(HTTPStatus.FORBIDDEN,
                                      {"error": f"{rel!r} is not an image of this folder"})
                kind = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                        ".gif": "image/gif", ".bmp": "image/bmp", ".webp": "image/webp"}
                return self._send(HTTPStatus.OK, path.read_bytes(),
                                  kind.get(path.suffix.lower(), "application/octet-stream"))
            return self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {url.path!r}"})

        def do_POST(self):
            if self._foreign():
                return None
            try:
                size = int(self.headers.get("Content-Length", 0))
                if not 0 <= size <= 100_000:
                    raise UsageError("request too large")
                body = parse_json(self.rfile.read(size) or b"{}")
                if not isinstance(body, dict):
                    raise UsageError("the request must be a JSON object")
                seen = body.get("seen")
                if type(seen) is not int:
                    raise UsageError(f"'seen' is {seen!r}: send the number of answers the "
                                     "page has seen (reload the page)")
                if self.path == "/api/label":
                    label = body.get("class")
                    return self._json(HTTPStatus.OK,
                                      session.answer(body.get("file"), label, seen))
                if self.path == "/api/skip":
                    return self._json(HTTPStatus.OK, session.answer(body.get("file"), None, seen))
                if self.path == "/api/undo":
                    return self._json(HTTPStatus.OK, session.undo(seen))
                return self._json(HTTPStatus.NOT_FOUND, {"error": f"no action {self.path!r}"})
            except Conflict as e:
                return self._json(HTTPStatus.CONFLICT, {"error": str(e)})
            except (UsageError, ValueError) as e:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            except OSError as e:  # a full disk, a read-only folder: said, the server stays up
                return self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {
                    "error": f"could not write the answer ({e.strerror or e}): free some "
                             "space or fix the permissions, then answer again"})

    return Handler


def serve(root: str | Path, queue: list[str] | None = None, port: int = 0,
          ready=None) -> None:
    """Serve the labeling page for ``root`` on 127.0.0.1 (``port`` 0: a free one) until
    interrupted; ``ready(url)`` is called once it listens."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{str(root)!r} is not a folder: give the folder of images to label")
    (root / STATE).mkdir(exist_ok=True)
    with run_folder_lock(root / STATE):
        session = Session(root, queue)
        if not session.queue:
            raise UsageError(f"no image to label in {str(root)!r}: put images in "
                             f"{root}/unlabeled/")
        try:
            server = ThreadingHTTPServer(("127.0.0.1", port), handler(session))
        except OSError as e:  # the port is taken, or below 1024 for a user: say which
            if e.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            why = ("is in use by another program" if e.errno == errno.EADDRINUSE else
                   "needs privileges here (ports under 1024 do)")
            raise UsageError(f"--port {port} {why}: choose another, or 0 for a free one"
                             ) from None
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/"
            if ready is not None:
                ready(url)
            server.serve_forever()
        finally:
            server.server_close()
