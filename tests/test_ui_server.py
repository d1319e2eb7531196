"""The web app as a real server on 127.0.0.1, driven by gradio_client (tiny offline model).

Upload -> session -> a streamed answer -> stored under the right owner; bad files give the
clear intake message; another owner's session cannot be used by id.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

pytest.importorskip("gradio_client")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from pulse_app.auth import new_owner_token  # noqa: E402


@pytest.fixture(scope="module")
def client(ui_server):
    return Client(ui_server.url, verbose=False, download_files=False)


def test_public_api_is_the_session_and_model_endpoints(ui_server):
    public = {fn.api_name for fn in ui_server.demo.fns.values()
              if fn.api_visibility == "public"}
    assert public == {"session_start", "session_ask", "ask", "model_info"}


def test_upload_ask_streams_and_is_stored(client, ui_server, shared_data):
    token = new_owner_token()
    session_id = client.predict(handle_file(str(shared_data / "ecg-images" / "ecg00040.jpg")),
                                token, 1, api_name="/session_start")
    job = client.submit(token, session_id, "What is the rhythm?", 0.0, 0.7, 8,
                        api_name="/session_ask")
    updates = list(job)
    answer = job.outputs()[-1]
    assert len(updates) >= 2, "the answer should arrive in several streamed updates"
    assert all(answer.startswith(u) for u in updates), "updates are the answer so far"

    stored = ui_server.store.get_session(f"browser:{token}", session_id)
    assert [t.question for t in stored.turns] == ["What is the rhythm?"]
    assert stored.turns[0].answer == answer.strip()
    assert "UNTRAINED" in stored.turns[0].model_label
    assert stored.edited_png[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_file_gives_the_clear_message(client, ui_server, tmp_path):
    fake = tmp_path / "scan.png"
    fake.write_text("this is a letter, not a picture")
    token = new_owner_token()
    with pytest.raises(AppError) as error:
        client.predict(handle_file(str(fake)), token, 1, api_name="/session_start")
    assert "scan.png" in str(error.value) or "image" in str(error.value).lower()
    assert ui_server.store.list_sessions(f"browser:{token}") == []


def test_another_owner_cannot_use_a_session_by_id(client, ui_server, shared_data):
    alice, mallory = new_owner_token(), new_owner_token()
    session_id = client.predict(handle_file(str(shared_data / "ecg-images" / "ecg00010.png")),
                                alice, 1, api_name="/session_start")
    with pytest.raises(AppError):
        client.predict(mallory, session_id, "Show me", 0.0, 0.7, 4, api_name="/session_ask")
    assert ui_server.store.get_session(f"browser:{alice}", session_id).turns == []
    assert ui_server.store.list_sessions(f"browser:{mallory}") == []


def test_a_malformed_owner_token_is_refused(client, shared_data):
    with pytest.raises(AppError, match="private space"):
        client.predict(handle_file(str(shared_data / "ecg-images" / "ecg00010.png")),
                       "alice", 1, api_name="/session_start")


def test_a_dicom_record_is_rendered_and_chatted_about(client, ui_server, shared_data, tmp_path):
    from pulse_app.ecg.records import read_record, write_dicom

    dicom = write_dicom(read_record(shared_data / "ecg-records" / "E07509.hea"),
                        tmp_path / "E07509.dcm")
    token = new_owner_token()
    session_id = client.predict(handle_file(str(dicom)), token, 1, api_name="/session_start")
    assert client.predict(token, session_id, "Any bundle branch block?", 0.0, 0.7, 4,
                          api_name="/session_ask").strip()
    from io import BytesIO

    from PIL import Image

    stored = ui_server.store.get_session(f"browser:{token}", session_id)
    assert Image.open(BytesIO(stored.edited_png)).size == (2200, 1700)


def test_with_accounts_the_owner_is_the_signed_in_user(tmp_path, ui_cache, shared_data):
    from pulse_app.auth import hash_password
    from tests.fixtures_ui import make_ui_settings, start_server

    users = tmp_path / "users"
    users.write_text(f"ana:{hash_password('s3cret pass', n=2**10)}\n")
    server = start_server(make_ui_settings(tmp_path / "data", ui_cache, auth=str(users)))
    try:
        with pytest.raises(Exception):
            Client(server.url, verbose=False, auth=("ana", "wrong"))
        ana = Client(server.url, verbose=False, download_files=False, auth=("ana", "s3cret pass"))
        session_id = ana.predict(handle_file(str(shared_data / "ecg-images" / "ecg00010.png")),
                                 "", 1, api_name="/session_start")
        assert [s.id for s in server.store.list_sessions("user:ana")] == [session_id]
    finally:
        server.close()


def test_another_copy_of_the_app_answers_through_the_space_backend(ui_server, ui_cache,
                                                                     shared_data, tmp_path):
    """App B (--backend space --url A) sends its questions to app A's /ask endpoint."""
    from tests.fixtures_ui import make_ui_settings, start_server

    remote = start_server(make_ui_settings(tmp_path / "b", ui_cache, backend="space",
                                           url=ui_server.url))
    try:
        client = Client(remote.url, verbose=False, download_files=False)
        token = new_owner_token()
        session_id = client.predict(handle_file(str(shared_data / "ecg-images" / "ecg00010.png")),
                                    token, 1, api_name="/session_start")
        answer = client.predict(token, session_id, "What is the rhythm?", 0.0, 0.7, 6,
                                api_name="/session_ask")
        turn, = remote.store.get_session(f"browser:{token}", session_id).turns
        assert turn.answer == answer.strip() and answer.strip()
        assert "tiny-untrained" in turn.model_label and ui_server.url.rstrip("/") in \
            turn.model_label
        assert ui_server.store.list_sessions(f"browser:{token}") == [], \
            "the answering app keeps no session of the asking app's visitor"
    finally:
        remote.close()


def test_straighten_on_the_session_and_ask_endpoints(client, ui_server, phone_photo):
    """``straighten=True``: /session_start stores the proposal as the session's edit (original
    kept, the flat page is the edited picture), and /ask answers about the flat page; with
    ``grounded`` too, about the flat page with the digitiser's reading of it as context."""
    from pulse_app.engine.backend import GenerationParams, answer
    from pulse_app.intake import load_upload
    from pulse_app.straighten import straightened

    photo = load_upload(phone_photo).image
    flat, proposal = straightened(photo)
    assert proposal.changes
    token = new_owner_token()
    session_id = client.predict(handle_file(str(phone_photo)), token, 1, None, True,
                                api_name="/session_start")
    stored = ui_server.store.get_session(f"browser:{token}", session_id)
    assert stored.params["edit"]["corners"] == [[round(x, 2), round(y, 2)]
                                                for x, y in proposal.corners]
    assert stored.params["edit"]["page_size"] == list(proposal.page_size)
    assert Image.open(io.BytesIO(stored.original_png)).size == photo.size
    assert Image.open(io.BytesIO(stored.edited_png)).size == flat.size

    got = client.predict(handle_file(str(phone_photo)), "Rate?", "[]", 0.0, 0.7, 8, None, True,
                         api_name="/ask")
    expected = answer(ui_server.chat.backend, flat, [], "Rate?",
                      GenerationParams(temperature=0.0, top_p=0.7, max_new_tokens=8))
    assert got == expected
    plain = client.predict(handle_file(str(phone_photo)), "Rate?", "[]", 0.0, 0.7, 8,
                           api_name="/ask")             # straighten defaults to false
    assert plain == answer(ui_server.chat.backend, photo, [], "Rate?",
                           GenerationParams(temperature=0.0, top_p=0.7, max_new_tokens=8))
    assert plain != got, "the photo and the flat page are told apart"

    from pulse_app.grounding import grounded_question, read_image, summary_context

    grounded = client.predict(handle_file(str(phone_photo)), "Rate?", "[]", 0.0, 0.7, 8, None,
                              True, True, api_name="/ask")      # straightened, then grounded
    context = summary_context(read_image(flat)[1])
    assert grounded == answer(ui_server.chat.backend, flat, [],
                              grounded_question("Rate?", context),
                              GenerationParams(temperature=0.0, top_p=0.7, max_new_tokens=8))
