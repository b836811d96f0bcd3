"""Attacks that held before and must keep holding: JWT tricks, ownership, request smuggling."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from kaleido.app import Running

from .conftest import KEY, address, bearer, connect, public, read_all, user_token


def _segment(value: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _claims(user_id: int = 7) -> dict[str, object]:
    now = int(time.time())
    return {"sub": "u", "userId": user_id, "role": "ROLE_ADMIN", "iat": now, "exp": now + 600}


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # HS512, our key
async def test_jwt_tricks_are_refused(secured: Running) -> None:
    unsigned = f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(_claims())}."
    other_alg = jwt.encode(_claims(), KEY, algorithm="HS512")
    wrong_key = jwt.encode(_claims(), b"x" * 32, algorithm="HS256")
    expired = user_token(7, ttl=-120)  # past the 60 s leeway
    forged_body = ".".join([*user_token(7).split(".")[:1], _segment(_claims(8)),
                            user_token(7).split(".")[2]])  # fmt: skip
    async with public(secured) as http:
        for token in (unsigned, other_alg, wrong_key, expired, forged_body):
            r = await http.post("/v1/views", json={"postId": 1}, headers=bearer(token))
            assert r.status_code == 401 and "www-authenticate" in r.headers, token
        other_user = await http.post("/v1/views", json={"userId": 8, "postId": 1},
                                     headers=bearer(user_token(7)))  # fmt: skip
        assert other_user.status_code == 403


async def test_a_user_cannot_touch_another_users_post_or_picture(secured: Running) -> None:
    alice, mallory = bearer(user_token(7)), bearer(user_token(8))
    media = [{"mediaId": 11, "mediaUrl": "https://cdn.example.com/a.jpg"}]
    async with public(secured) as http:
        made = await http.post("/v1/posts", json={"postId": 10, "userId": 7, "media": media},
                               headers=alice)  # fmt: skip
        assert made.status_code < 300, made.text
        theirs = await http.post("/v1/posts", json={"postId": 12, "userId": 7, "media": []},
                                 headers=mallory)  # fmt: skip
        assert theirs.status_code == 403
        replaced = await http.put("/v1/posts/10/media", json={"media": []}, headers=mallory)
        assert replaced.status_code == 403
        picture = await http.post("/v1/users/7/profile-picture", headers=mallory,
                                  json={"imageUrl": "https://cdn.example.com/b.jpg"})  # fmt: skip
        assert picture.status_code == 403


async def test_request_smuggling_gets_one_answer_and_a_closed_connection(
    secured: Running,
) -> None:
    """A body framed two ways (Content-Length and chunked), two Content-Lengths, or a
    transfer coding other than chunked: the server answers once (400, or 501 for the coding)
    and closes; the request hidden in the body is never served."""
    hidden = b"GET /healthz HTTP/1.1\r\nHost: k\r\n\r\n"
    attempts = [
        b"POST /v1/views HTTP/1.1\r\nHost: k\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden,
        b"POST /v1/views HTTP/1.1\r\nHost: k\r\nContent-Type: application/json\r\n"
        b"Content-Length: 0\r\nContent-Length: 44\r\n\r\n" + hidden,
        b"POST /v1/views HTTP/1.1\r\nHost: k\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
        b"0\r\n\r\n" + hidden,
    ]
    for attempt in attempts:
        stream = await connect(address(secured.http_addresses[0]))
        async with stream:
            await stream.send_all(attempt)
            reply = await read_all(stream)
        assert reply.count(b"HTTP/1.1 ") == 1, reply
        assert reply.startswith((b"HTTP/1.1 400", b"HTTP/1.1 501")), reply
        assert b'"status":"ok"' not in reply and b'"status": "ok"' not in reply
