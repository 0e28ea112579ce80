"""Chat with a live (tiny) model: the sampler `alinea serve --chat-model` builds, behind the chat API."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from alinea.feedback.app import create_app

from .conftest import annotator, new_project


@pytest.mark.slow
def test_chat_with_a_tiny_checkpoint(sqlite_template, tmp_path, pretrained_dir):
    """On SQLite only: the model, not the database, is under test here."""
    import shutil

    from alinea.commands.feedback import chat_sampler_from_checkpoint
    from alinea.feedback.settings import FeedbackSettings

    shutil.copy(sqlite_template, tmp_path / "chat.db")
    settings = FeedbackSettings(db_url=f"sqlite:///{tmp_path / 'chat.db'}", migrate=False, secret_key="t")

    sampler = chat_sampler_from_checkpoint(pretrained_dir, max_new_tokens=8, temperature=1.0, top_p=1.0)
    two = sampler([{"role": "user", "content": "Tell me about the river."}], 2, 7)
    assert len(two) == 2 and all(isinstance(text, str) for text in two)
    assert sampler([{"role": "user", "content": "Tell me about the river."}], 2, 7) == two  # seeded
    app = create_app(settings, chat_sampler=sampler)
    with TestClient(app) as client:
        from .conftest import Api, make_token, make_user

        make_user(app.state.database, "admin", "admin")
        admin = Api(client, make_token(app.state.database, "admin"))
        ana = annotator(app, client, "ana")
        project = new_project(admin, task_type="chat", members=["ana"])
        chat = ana.post(f"/projects/{project}/chats", {}).json()
        answered = ana.post(f"/chats/{chat['id']}/messages", {"content": "Tell me about the garden."}).json()
        assert len(answered["pending"]) == 2
        picked = ana.post(f"/chats/{chat['id']}/pick", {"choice": "left", "strength": 1}).json()
        assert picked["messages"][-1]["role"] == "assistant" and picked["turns"] == 1
        again = ana.post(f"/chats/{chat['id']}/messages", {"content": "And the lamp?"}).json()
        assert len(again["messages"]) == 3 and len(again["pending"]) == 2


def test_chat_without_a_model_says_so(settings):
    app = create_app(settings)
    with TestClient(app) as client:
        from .conftest import Api, make_token, make_user

        make_user(app.state.database, "admin", "admin")
        admin = Api(client, make_token(app.state.database, "admin"))
        project = new_project(admin, task_type="chat")
        chat = admin.post(f"/projects/{project}/chats", {}).json()
        response = admin.post(f"/chats/{chat['id']}/messages", {"content": "hello"})
        assert response.status_code == 503 and "--chat-model" in response.json()["detail"]
