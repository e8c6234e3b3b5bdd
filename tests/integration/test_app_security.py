"""Security of the running app (`ecg-app serve`, as users start it): what Gradio's file route serves, which
files `/analyze` accepts, hostile upload names, the upload size limit, the bind address, the login, and
the hostile-text corpus (tests/hostile_text.py) through the API. See docs/security.md.

Raw HTTP (urllib) where gradio_client would hide the request: the file route
`/gradio_api/file=<path>` (gradio/routes.py `file`, allowed-path check in route_utils.file_fetch), the
upload route `/gradio_api/upload`, and the two-step call API `/gradio_api/call/<api_name>`.
"""

from __future__ import annotations

import ipaddress
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from app_server import has_model, running_app
from gradio_client import Client, handle_file

from ecg_app.config import REPO_ROOT
from ecg_app.serving.intake import DEFAULT_MAX_BYTES
from ecg_app.ui.analyze_tab import EXAMPLES_DIR
from tests.hostile_text import CASES
from tests.test_hostile_text import FIELDS, LIMIT_MESSAGE, as_typed, expected

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not has_model(), reason="no trained model in model/ yet"),
]

ECG_IMAGE = EXAMPLES_DIR / "MI(19).jpg"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("security-data")


@pytest.fixture(scope="module")
def app_url(data_dir) -> str:
    with running_app(data_dir) as url:
        yield url


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def stored_image(client, data_dir) -> Path:
    """The stored copy of one analysed upload: a file the app does serve (the positive control)."""
    result = client.predict(image=handle_file(str(ECG_IMAGE)), api_name="/analyze")
    (item,) = [i for i in client.predict(limit=500, api_name="/history")["items"] if i["id"] == result["id"]]
    sha = item["image_sha256"]
    return data_dir / "images" / sha[:2] / f"{sha}.stored.jpg"  # the de-identified picture


def http(url: str, data: bytes | None = None, headers: dict | None = None, opener=None) -> tuple[int, bytes]:
    """Status and body of one request (error statuses returned, not raised)."""
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with (opener or urllib.request.build_opener()).open(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def file_route(base: str, path: str | Path, route: str = "file=") -> str:
    return f"{base}gradio_api/{route}{urllib.parse.quote(str(path), safe='/=')}"


def upload(base: str, filename: str, content: bytes, opener=None) -> tuple[int, bytes]:
    """POST one file to Gradio's upload route as a browser does (multipart), under the given name."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return http(f"{base}gradio_api/upload", body, headers, opener)


def call(base: str, api_name: str, data: list) -> tuple[str, object]:
    """Gradio's two-step call API: the last event ("complete" or "error") and its data."""
    status, body = http(
        f"{base}gradio_api/call/{api_name}",
        json.dumps({"data": data}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200, body
    status, stream = http(f"{base}gradio_api/call/{api_name}/{json.loads(body)['event_id']}")
    events = [block for block in stream.decode().split("\n\n") if block.startswith("event:")]
    event, _, payload = events[-1].partition("\ndata:")
    return event.removeprefix("event:").strip(), json.loads(payload) if payload.strip() else None


def file_data(path: str | Path) -> dict:
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


def history_total(client: Client) -> int:
    return client.predict(api_name="/history")["total"]


# -- served files --------------------------------------------------------------------------------------


def test_file_route_serves_the_stored_images_and_nothing_else(app_url, data_dir, stored_image):
    status, body = http(file_route(app_url, stored_image))
    assert status == 200 and body == stored_image.read_bytes()  # the route works: refusals below mean it
    database = data_dir / "ecg_app.sqlite3"
    assert database.is_file()
    forbidden = [
        "/etc/passwd",
        REPO_ROOT / "pyproject.toml",  # the server's working directory
        REPO_ROOT / "model" / "model.json",
        REPO_ROOT / "ecg_app" / "config.py",
        database,
        data_dir / "server.log",
        f"{data_dir}/images/../ecg_app.sqlite3",
    ]
    urls = [file_route(app_url, path, route) for path in forbidden for route in ("file=", "file/")]
    urls.append(f"{app_url}gradio_api/file={data_dir}/images/%2e%2e/ecg_app.sqlite3")
    for url in urls:
        status, body = http(url)
        assert status in (403, 404), (url, status)
        assert b"root:" not in body and not body.startswith(b"SQLite format")


def test_analyze_takes_only_files_uploaded_through_gradio(app_url, client, data_dir, stored_image):
    """A client cannot name a server path as its upload: not the database, not a file in the checkout,
    not even an image the app itself stored."""
    before = history_total(client)
    for path in (data_dir / "ecg_app.sqlite3", ECG_IMAGE, stored_image, "/etc/passwd"):
        event, payload = call(app_url, "analyze", [file_data(path), None, None, None, None])
        assert event == "error", (path, payload)
    assert history_total(client) == before
    status, body = upload(app_url, "scan.jpg", ECG_IMAGE.read_bytes())
    assert status == 200
    event, payload = call(app_url, "analyze", [file_data(json.loads(body)[0]), None, None, None, None])
    assert event == "complete" and payload[0]["file"] == "scan.jpg"
    assert history_total(client) == before + 1


@pytest.mark.parametrize(
    "filename",
    ["../../evil.png", "/etc/passwd", "a\\b.png", "..\\..\\evil.png", "x" * 300 + ".png", "<img src=x>.png"],
)
def test_upload_names_never_become_paths(app_url, filename):
    status, body = upload(app_url, filename, ECG_IMAGE.read_bytes())
    assert status == 200, body
    (saved,) = (Path(p) for p in json.loads(body))
    upload_root = saved.parent.parent  # Gradio's upload folder: <root>/<content hash>/<name>
    assert saved.is_file() and "/" not in saved.name and "\\" not in saved.name and ".." not in saved.parts
    assert not (upload_root / "evil.png").exists() and not (upload_root.parent / "evil.png").exists()
    event, payload = call(app_url, "analyze", [file_data(saved), None, None, None, None])
    assert event == "complete", payload
    shown = payload[0]["file"]
    assert shown == saved.name and len(shown) <= 255 and not {"/", "\\", "<", ">"} & set(shown)


def test_uploads_over_twice_the_limit_are_refused_by_gradio(app_url, client):
    """Over 2x ECG_APP_MAX_UPLOAD_BYTES Gradio stops reading the upload (413); between 1x and 2x intake
    refuses it from its size alone, before decoding (tests/integration/test_hostile_api.py)."""
    status, body = upload(app_url, "huge.jpg", b"\xff" * (2 * DEFAULT_MAX_BYTES + 1))
    assert status == 413 and b"maximum allowed size" in body
    assert history_total(client) >= 0  # still answering


# -- network and login ------------------------------------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """Addresses with a listening TCP socket on `port`, from the kernel's tables (Linux)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        lines = Path(table).read_text().splitlines()[1:] if Path(table).exists() else []
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
                packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(str(ipaddress.ip_address(packed)))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp")
def test_server_listens_on_localhost_only_by_default(app_url):
    """app_server starts `ecg-app serve` without --host, as a user would."""
    assert listening_addresses(urllib.parse.urlsplit(app_url).port) == {"127.0.0.1"}


def test_login_guards_pages_api_and_files(tmp_path):
    with running_app(tmp_path / "auth-data", users="alice:correct-horse") as url:
        authed = Client(url, verbose=False, auth=("alice", "correct-horse"))
        result = authed.predict(image=handle_file(str(ECG_IMAGE)), api_name="/analyze")
        sha = authed.predict(api_name="/history")["items"][0]["image_sha256"]
        assert result["id"]
        image = tmp_path / "auth-data" / "images" / sha[:2] / f"{sha}.stored.jpg"
        assert image.is_file()
        for request in (
            (file_route(url, image), None, None),
            (f"{url}gradio_api/call/history", b'{"data": []}', {"Content-Type": "application/json"}),
            (f"{url}gradio_api/upload", b"", None),
        ):
            assert http(*request)[0] == 401
        assert upload(url, "scan.jpg", b"x")[0] == 401
        jar = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        wrong = urllib.parse.urlencode({"username": "alice", "password": "wrong"}).encode()
        assert http(f"{url}login", wrong, opener=jar)[0] == 400
        assert http(file_route(url, image), opener=jar)[0] == 401
        right = urllib.parse.urlencode({"username": "alice", "password": "correct-horse"}).encode()
        assert http(f"{url}login", right, opener=jar)[0] == 200
        assert http(file_route(url, image), opener=jar) == (200, image.read_bytes())


# -- hostile text through the API -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uploaded_ecg(app_url) -> dict:
    """One upload, analysed again for every case (the image is not what these tests are about)."""
    status, body = upload(app_url, "scan.jpg", ECG_IMAGE.read_bytes())
    assert status == 200
    return file_data(json.loads(body)[0])


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_text_through_the_api(app_url, client, uploaded_ecg, case):
    """The same outcome as the form and the CLI (tests/test_hostile_text.py): stored as expected, or
    refused with the field's limit and nothing stored. Raw JSON, as any client may send it: gradio_client
    cannot send a lone surrogate at all."""

    def analyze(name: str | None, notes: str | None) -> tuple[str, object]:
        return call(app_url, "analyze", [uploaded_ecg, name, None, None, notes])

    before = history_total(client)
    for field in FIELDS:
        if not case.accepts(field):
            event, payload = analyze(**{"name": None, "notes": None, field: case.text})
            assert event == "error" and LIMIT_MESSAGE[field] in payload["error"], payload
            assert history_total(client) == before
    typed = as_typed(case)
    if not any(typed.values()):
        return
    event, payload = analyze(**typed)
    assert event == "complete", payload
    items = client.predict(limit=500, api_name="/history")["items"]
    (item,) = [item for item in items if item["id"] == payload[0]["id"]]
    want = expected(case)
    assert (item["patient_name"], item["notes"]) == (want["name"], want["notes"])
